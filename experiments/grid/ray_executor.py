"""Runs as Ray tasks: :class:`RayExecutor`, on a local or remote cluster.

Each job (a run, or a group of runs as a list) is one task whose body
(:func:`_ray_task`) goes through :func:`experiments.grid.executors.run_jobs`, as a run
trained here does; the worker loads the dataset once and keeps it. The results folder
must be visible to every node at the same path (a shared file system). Ray is an
optional dependency (``.[ray]``); see docs/scaling.md.
"""
import importlib
import os
import socket
import sys

from experiments.data import DataError
from experiments.results import faults
from experiments.training import metric_logs
from experiments.training.grouping import device_room
from experiments.config import ConfigError
from experiments.grid.executors import MAX_ATTEMPTS, _first_line, _outcome, run_jobs

__all__ = ["RayExecutor", "start_local_ray"]


_DATASETS = {}  # per Ray worker process: datasets already loaded


def _ray_task(job, events):
    """The body of a Ray task: one job (or a group: a list of jobs, and a list of
    outcomes back), its events sent to the ``events`` actor."""

    def on_event(run_id, kind, payload):
        events.put.remote(run_id, kind, payload)
    group = job if isinstance(job, list) else None
    job = group[0] if group else job
    problem = _worker_problem(job)
    if problem is not None:
        return [dict(problem, run_id=j.run_id, run_dir=j.run_dir) for j in group] \
            if group else problem
    key = (job.data, job.data_dir, job.load_fn)
    try:
        if key not in _DATASETS:
            _DATASETS.clear()  # one dataset per worker at a time: they can be large
            _DATASETS[key] = job.data.load(job.data_dir, job.load_fn, quiet=True)
        outcomes = run_jobs(group or [job], _DATASETS[key], on_event)
        return outcomes if group else outcomes[0]
    except (DataError, ConfigError) as error:
        return _outcome(job, "user_error", message=str(error))
    except faults.StorageError as error:  # said already: the data folder, a compile cache
        return _outcome(job, "storage_fault", message=str(error))
    except OSError as error:
        if not faults.is_storage_fault(error):
            raise
        return _outcome(job, "storage_fault", error=(error.errno, error.strerror,
                                                     error.filename))


def _worker_problem(job):
    """Why this worker cannot train ``job`` (a ``user_error`` outcome), before it
    starts: the results folder is not visible here, or a ``--log`` package does not
    import in this worker's Python."""
    grid_dir = os.path.dirname(job.run_dir)
    if not os.path.isdir(grid_dir):
        return _outcome(job, "user_error", message=(
            f"{grid_dir} is not visible on {socket.gethostname()}: the results folder must "
            f"be on a file system that every Ray node mounts at the same path"))
    try:
        metric_logs.check(job.metric_log, where=f"the Ray worker's Python on "
                                                f"{socket.gethostname()} ({sys.executable})")
    except ConfigError as error:
        return _outcome(job, "user_error", message=str(error))
    return None


def _device_room():
    return device_room()


class _Events:
    """A Ray actor collecting the tasks' events for the driver."""

    def __init__(self):
        self.events = []

    def put(self, *event):
        self.events.append(event)

    def take(self):
        events, self.events = self.events, []
        return events


#: Ray's private switch of its local-only mode, which start_local_ray flips, and the
#: Ray versions it is known to work with (ray._private.services.get_node_ip_address reads
#: it; checked up to 2.60).
LOCAL_ONLY_SWITCH = "ray._private.ray_constants.ENABLE_RAY_CLUSTER"
KNOWN_RAY = "2.9 to 2.60"


def _local_only_switch(ray):
    """Ray's module holding :data:`LOCAL_ONLY_SWITCH`; a :class:`ConfigError` when this Ray
    has none (a newer Ray that dropped it would bind to the host's address, silently)."""
    module, _, name = LOCAL_ONLY_SWITCH.rpartition(".")
    try:
        constants = importlib.import_module(module)
    except ImportError:
        constants = None
    if constants is None or not hasattr(constants, name):
        raise ConfigError(
            f"--executor ray: Ray {ray.__version__} has no {LOCAL_ONLY_SWITCH}, which keeps "
            f"the Ray this grid starts on 127.0.0.1 (known for Ray {KNOWN_RAY}); start one "
            f"yourself (ray start --head --node-ip-address=127.0.0.1) and pass --address "
            f"auto, or install a Ray of those versions")
    return constants, name


def start_local_ray(**options):
    """Start a Ray for this process alone with every server bound to 127.0.0.1.

    Ray takes ``127.0.0.1`` for "this host" and binds to the host's address instead,
    except in its local-only mode (its default on macOS and Windows); that mode is
    switched on while this Ray starts (:data:`LOCAL_ONLY_SWITCH`, a private constant:
    a Ray without it is refused, and a Ray that ignores it, found bound elsewhere, is
    stopped, each with a :class:`ConfigError`). ``options`` go to ``ray.init``.
    """
    import ray
    constants, name = _local_only_switch(ray)
    cluster = getattr(constants, name)
    setattr(constants, name, False)
    try:
        context = ray.init(address="local", _node_ip_address="127.0.0.1", **options)
    finally:
        setattr(constants, name, cluster)
    # where it is bound (without the switch, Ray 2.60 binds to the host's address even
    # with _node_ip_address 127.0.0.1)
    bound = {str(node.get("NodeManagerAddress")) for node in ray.nodes()}
    bound.add(ray.get_runtime_context().gcs_address.rpartition(":")[0])
    if bound != {"127.0.0.1"}:
        ray.shutdown()
        raise ConfigError(f"--executor ray: the local Ray started on {', '.join(sorted(bound))}, "
                          f"not 127.0.0.1 alone: Ray {ray.__version__} no longer honours "
                          f"{LOCAL_ONLY_SWITCH} (known for Ray {KNOWN_RAY})")
    return context


class RayExecutor:
    """Each job a Ray task. ``address``: ``host:port`` of a cluster, ``'auto'`` for the
    one ``ray start`` runs on this host, or None: the cluster ``RAY_ADDRESS`` names, else
    a new local Ray for this grid alone, on 127.0.0.1 (:func:`start_local_ray`).

    A task whose worker dies is retried by Ray (up to ``max_retries`` times); the
    retry takes the dead worker's claim over and resumes from the checkpoint.
    """

    name = "ray"

    def __init__(self, address=None, num_cpus=1, num_gpus=0, max_retries=MAX_ATTEMPTS,
                 quiet=False):
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.max_retries, self.quiet = max_retries, quiet
        self._started = False

    def __enter__(self):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray: Ray is not installed in this Python; "
                              "pip install -e '.[ray]'") from None
        if not (sys.stdout.isatty() and sys.stderr.isatty()):  # a log file: no colour codes
            os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # in the workers' forwarded lines
        if not ray.is_initialized():
            options = dict(include_dashboard=False, logging_level="ERROR",
                           log_to_driver=not self.quiet)
            try:
                if self.address is None and not os.environ.get("RAY_ADDRESS"):
                    start_local_ray(**options)
                else:
                    ray.init(address=self.address, **options)
            except ConfigError:  # said already (a ValueError too)
                raise
            except (ConnectionError, ValueError, RuntimeError) as e:
                where = f"--address {self.address}" if self.address else "ray.init()"
                raise ConfigError(f"{where}: cannot start or reach Ray: "
                                  f"{' '.join(str(e).split())}") from None
            self._started = True
        return self

    def __exit__(self, *exc):
        if self._started:
            import ray
            ray.shutdown()

    def _options(self):
        options = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                   "max_retries": self.max_retries, "retry_exceptions": False}
        if 0 < self.num_gpus < 1:  # GPUs shared by several tasks: allocate memory as needed
            options["runtime_env"] = {"env_vars": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}}
        return options

    def device_room(self):
        """``(platform, free bytes)`` of the device a task gets, asked of a worker
        started as the tasks are (a task's share of it when GPUs are shared)."""
        import ray
        probe = ray.remote(_device_room).options(**self._options())
        platform, memory = ray.get(probe.remote())
        return platform, int(memory * min(self.num_gpus, 1)) if self.num_gpus else memory

    def run(self, jobs, on_event=None):
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                              soft=False)  # dies only with the driver
        events = ray.remote(_Events).options(num_cpus=0, scheduling_strategy=here).remote()
        task = ray.remote(_ray_task).options(**self._options())
        pending = {task.remote(job, events): job for job in jobs}

        def relay():
            for event in ray.get(events.take.remote()):
                if on_event is not None:
                    on_event(*event)
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
                relay()
                for ref in ready:
                    job = pending.pop(ref)
                    group = job if isinstance(job, list) else [job]
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as error:  # e.g. the worker died again
                        outcome = [_outcome(j, "failed", message=_first_line(error))
                                   for j in group]
                    yield from (outcome if isinstance(outcome, list) else [outcome])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
            ray.kill(events)
