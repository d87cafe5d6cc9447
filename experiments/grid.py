"""Grids of runs: expansion, run ids, the plan, and the loop that trains what is missing.

A grid config (see :mod:`experiments.config`) expands into one run per seed and
combination of axis values. Runs go to ``<results>/<name>/<run id>/`` (see
:mod:`experiments.results`). Run ids name the axes of the config's ``grid:`` (even an
axis with a single value, so that adding values later keeps the ids) and the seed,
in a fixed order: ``amsgrad_lr=0.001_b2=0.999_bc=on_seed=3``.

Finished and diverged runs are done and skipped; any other run is (re)trained, and a
run with a checkpoint resumes from it (the trainer does that). The fixed settings of
a grid are kept in ``<results>/<name>/grid.yaml``; a config that changes them under
the same name is refused rather than mixing results of two experiments. ``--epochs``
changes the learning-rate schedule, so its results go to ``<name>_epochs=<N>``.

The runs are trained by an executor (:mod:`experiments.executors`: here, or as Ray
tasks), each under a claim (:mod:`experiments.claims`), so several runners can work on
one results folder at once: a run a live process holds is left to it. A run whose
starts keep ending without progress is given up after ``max_attempts`` of them.
"""
import dataclasses
import errno
import itertools
import os
import sys

import yaml
from tqdm.auto import tqdm

from experiments import claims, setup, storage
from experiments.config import AXES, TRAIN_KEYS, ConfigError, check_value, did_you_mean
from experiments.executors import MAX_ATTEMPTS, Job, LocalExecutor, load_grid_dataset
from experiments.results import (DONE_STATES, GRID_FILE, CorruptFileError, RunStore,
                                 atomic_write_text)

# How each axis appears in run ids (None: the bare value); also accepted by --only.
ID_LABELS = {"updater": None, "learning_rate": "lr", "beta1": "b1", "beta2": "b2",
             "epsilon": "eps", "bias_correction": "bc"}

EXECUTORS = ("local", "ray")

__all__ = ["expand_grid", "run_id", "with_epochs", "select", "check_grid_dir", "Plan",
           "plan", "run_grid", "DONE_STATES", "EXECUTORS"]


def _id_value(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, float) else str(value)


def run_id(run, axes):
    """The id of ``run``: its values on ``axes`` (in :data:`~experiments.config.AXES`
    order) and its seed, e.g. ``amsgrad_lr=0.001_b2=0.999_bc=on_seed=3``."""
    parts = [_id_value(run[a]) if ID_LABELS[a] is None else f"{ID_LABELS[a]}={_id_value(run[a])}"
             for a in AXES if a in axes]
    return "_".join(parts + [f"seed={run['seed']}"])


def expand_grid(config):
    """One run dict per seed and combination of axis values, seeds outermost (so the
    first runs cover every setting once).

    A run dict is the resolved run config: ``name`` (the grid), ``run_id``, every
    setting of :data:`~experiments.config.TRAIN_KEYS`, every setup key
    (:mod:`experiments.setup`) and ``seed``.
    """
    if config.kind != "train":
        raise ValueError(f"{config.path}: a {config.kind} config has no grid of runs")
    axes = list(config.grid)
    runs = []
    for seed in config.seeds:
        for values in itertools.product(*config.grid.values()):
            settings = {**config.fixed, **dict(zip(axes, values)), "seed": seed}
            run = {"name": config.name, "run_id": run_id(settings, axes)}
            run.update((k, settings[k]) for k in (*TRAIN_KEYS, *setup.KEYS))
            run["seed"] = seed
            runs.append(run)
    return runs


def with_epochs(config, epochs):
    """``config`` trained for ``epochs`` instead; a different number of epochs is a
    different schedule, hence a different grid name (``<name>_epochs=<N>``)."""
    if epochs is None or epochs == config.fixed["epochs"]:
        return config
    return dataclasses.replace(config, name=f"{config.name}_epochs={epochs}",
                               fixed={**config.fixed, "epochs": epochs})


def select(runs, config, only):
    """The runs matching every ``key=value`` of ``only`` (a key given twice: either value).

    Keys are the grid's axes (or their labels in run ids: ``b2``, ``bc``) and ``seed``;
    values are read as YAML (``bc=off``, ``lr=1e-3``). A key or value the grid does not
    have raises :class:`ConfigError`.
    """
    choices = dict(config.grid, seed=config.seeds)
    aliases = {label: axis for axis, label in ID_LABELS.items() if label}
    wanted = {}
    for item in only or ():
        key, sep, text = (s.strip() for s in item.partition("="))
        if not sep or not key or not text:
            raise ConfigError(f"--only {item!r}: expected key=value, e.g. lr=0.001")
        key = aliases.get(key, key)
        if key not in choices:
            why = (f"{key!r} is fixed to {config.fixed[key]!r} in this grid" if key in config.fixed
                   else f"unknown key {key!r}{did_you_mean(key, choices)}")
            raise ConfigError(f"--only {item!r}: {why}; choose from {', '.join(choices)}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        try:
            if key == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"expected an integer, got {text!r}")
            else:
                value = check_value(key, value)
        except ValueError as e:
            raise ConfigError(f"--only {item!r}: {e}") from None
        if value not in choices[key]:
            shown = ", ".join(_id_value(v) for v in choices[key])
            raise ConfigError(f"--only {item!r}: not in this grid; {key} is one of {shown}")
        wanted.setdefault(key, []).append(value)
    return [r for r in runs if all(r[k] in vs for k, vs in wanted.items())]


def _grid_settings(config):
    """What grid.yaml records: the setup keys at their legacy values left out, so a
    grid of before the keys existed reads as the same setup."""
    return {"kind": config.kind, "axes": list(config.grid), **setup.canonical(config.fixed)}


def _as_then(stored, model):
    """A stored grid or run config with the setup keys it lacks at the values the code
    used before they existed (as it stands if it is not a config at all)."""
    try:
        return setup.resolve({"model": model, **stored})
    except (TypeError, ValueError, KeyError):
        return stored


def check_grid_dir(config, grid_dir, write=False):
    """Refuse ``grid_dir`` if it holds a grid of other fixed settings (``grid.yaml``);
    with ``write``, record this config's settings there when there are none yet."""
    path = os.path.join(grid_dir, GRID_FILE)
    settings = _grid_settings(config)
    try:
        with open(path, encoding="utf-8") as f:
            stored = (yaml.safe_load(f) or {}).get("settings")
    except FileNotFoundError:
        stored = None
    except (OSError, yaml.YAMLError, AttributeError) as e:
        if storage.is_storage_fault(e):
            raise
        raise ConfigError(f"{path}: unreadable ({type(e).__name__}); remove it or use "
                          f"another --results") from None
    if stored is None:
        if write:
            atomic_write_text(path, "# The fixed settings of this grid; results of other "
                                    "settings go elsewhere.\n"
                              + yaml.safe_dump({"name": config.name, "config": config.path,
                                                "settings": settings}, sort_keys=False))
        return
    stored, settings = _as_then(stored, settings["model"]), setup.resolve(settings)
    if stored != settings:
        missing = "(unset)"
        diffs = "; ".join(f"{k}: {stored.get(k, missing)!r} -> {settings.get(k, missing)!r}"
                          for k in sorted(set(stored) | set(settings), key=str)
                          if stored.get(k, missing) != settings.get(k, missing))
        raise ConfigError(f"{config.path}: {grid_dir} holds a grid with other fixed settings "
                          f"({diffs}); change the config's name or use --results DIR")


@dataclasses.dataclass
class Plan:
    """The runs of a grid and where each stands (``states``: run id -> state or None,
    ``epochs_done``: run id -> epochs in curves.csv, ``given_up``: run ids that used up
    their ``max_attempts``)."""
    config: object
    grid_dir: str
    runs: list
    states: dict
    epochs_done: dict
    given_up: set = dataclasses.field(default_factory=set)
    max_attempts: int = MAX_ATTEMPTS

    @property
    def done(self):
        return [r for r in self.runs if self.states[r["run_id"]] in DONE_STATES]

    @property
    def todo(self):
        return [r for r in self.runs if self.states[r["run_id"]] not in DONE_STATES
                and r["run_id"] not in self.given_up]

    def label(self, run):
        """``finished``, ``diverged``, ``given up``, ``failed``, ``partial 37/150`` or ``new``."""
        rid = run["run_id"]
        state, done = self.states[rid], self.epochs_done[rid]
        if rid in self.given_up:
            return "given up"
        if state in DONE_STATES or state == "failed":
            return state
        return f"partial {done}/{run['epochs']}" if done or state else "new"

    def summary(self):
        def part(runs, labels):
            counts = {}
            for run in runs:
                label = self.label(run).split()[0]
                counts[label] = counts.get(label, 0) + 1
            found = [f"{counts[k]} {k}" for k in labels if counts.get(k)]
            return f" ({', '.join(found)})" if found else ""
        n = len(self.runs)
        given_up = (f", {len(self.given_up)} given up after {self.max_attempts} attempts "
                    f"(--max-attempts to retry)") if self.given_up else ""
        return (f"{self.config.name}: {n} run{'s' if n != 1 else ''} in {self.grid_dir}: "
                f"{len(self.done)} done{part(self.done, DONE_STATES)}, {len(self.todo)} to do"
                f"{part(self.todo, ('partial', 'failed', 'new'))}{given_up}")


def plan(config, results_dir="results", only=(), max_attempts=MAX_ATTEMPTS):
    """Expand ``config``, select ``only``, and read where each run stands.

    Raises :class:`ConfigError` if the grid folder holds other settings, or a started
    run was configured differently, and ``NotADirectoryError`` if ``results_dir`` is a
    file. Damaged files count as missing here (the run is repaired when it is trained).
    """
    grid_dir = os.path.join(os.fspath(results_dir), config.name)
    if os.path.exists(results_dir) and not os.path.isdir(results_dir):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), results_dir)
    check_grid_dir(config, grid_dir)
    runs = select(expand_grid(config), config, only)
    the_plan = Plan(config, grid_dir, runs, {}, {}, max_attempts=max_attempts)
    for run in runs:
        rid = run["run_id"]
        store = RunStore(os.path.join(grid_dir, rid))
        stored = store.read_config()
        if stored is not None:  # a key missing there reads as the code then used it
            stored = _as_then(stored, run["model"])
        if stored is not None and {k: stored.get(k) for k in run} != run:
            diffs = ", ".join(f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in run.items()
                              if stored.get(k) != v)
            raise ConfigError(f"{config.path}: {store.run_dir} was configured otherwise "
                              f"({diffs}); move it away or use --results DIR")
        try:
            status = store.read_status() or {}
        except CorruptFileError:
            status = {}
        the_plan.states[rid] = status.get("state")
        the_plan.epochs_done[rid] = len(store.read_curves(partial=True))
        if status.get("gave_up") and status.get("attempts", 0) >= max_attempts:
            the_plan.given_up.add(rid)
    return the_plan


def _check_engine(engine, config):
    from importlib.util import find_spec
    from experiments.engines import ENGINES
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: choose from {', '.join(ENGINES)}")
    problem = setup.engine_problem(engine, setup.Setup.from_run(config.fixed))
    if problem:
        raise ConfigError(f"{config.path}: {problem}")
    if find_spec(engine) is None:
        raise ConfigError(f"--engine {engine}: {engine} is not installed in this Python "
                          f"({sys.executable})")


def _seconds(s):
    h, rest = divmod(int(round(s)), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def run_grid(config, results_dir="results", engine="jax", data_dir=None, only=(),
             quiet=False, dry_run=False, train_fn=None, load_fn=None, out=None,
             executor="local", address=None, num_cpus=None, num_gpus=None,
             max_attempts=MAX_ATTEMPTS, stale_after=claims.STALE_AFTER,
             heartbeat=claims.HEARTBEAT, group_size=1):
    """Train the runs of ``config`` that are not done; returns a summary dict.

    Parameters
    ----------
    config : GridConfig
    results_dir : path
        Runs go to ``results_dir/<config.name>/<run id>/``.
    engine, data_dir, quiet
        Passed on to the trainer (and ``data_dir`` to the data loader).
    only : list of str
        ``key=value`` filters, see :func:`select`.
    dry_run : bool
        Print the plan and every run's state; train nothing, write nothing.
    train_fn : callable, optional
        ``train_fn(run, store, engine=, data_dir=, dataset=, quiet=, position=, on_epoch=)
        -> status dict`` (``position`` 1: its progress bar goes below the grid's;
        ``on_epoch(row)`` after each epoch); default :func:`experiments.training.train_run`.
    load_fn : callable, optional
        ``load_fn(name, data_dir=, quiet=) -> Dataset``; default
        :func:`experiments.data.load_dataset`. Called once per grid (per Ray worker).
    out : file, optional
        Where the plan and per-run lines go (default stdout); failures go to stderr.
    executor : {'local', 'ray'}
        Train here, one run after another, or each run as a Ray task.
    address : str, optional
        Ray: the cluster to join (default: see :class:`~experiments.ray_executor.RayExecutor`).
    num_cpus, num_gpus : float, optional
        Ray: what each task asks for (default: the config's ``resources:``, else 1 CPU).
    max_attempts : int
        Starts of a run that may end without progress before it is given up.
    stale_after, heartbeat : float
        Claims: seconds of silence after which another runner takes a run over, and
        seconds between a runner's signs of life (see :mod:`experiments.claims`).
    group_size : int or 'auto'
        JAX engine: train up to this many compatible runs together in one compiled
        program (:func:`experiments.grouping.group_runs`; 'auto': as many as fit in
        the device's memory); 1 trains one run after another.

    Returns
    -------
    dict
        ``total``, ``done_before``, ``trained`` (run ids now finished or diverged),
        ``failed`` (run ids), ``busy`` (run ids other live runners hold),
        ``given_up`` (run ids given up before), ``plan`` (:class:`Plan`).
    """
    out = out or sys.stdout
    if config.kind == "synthetic":
        return _run_synthetic(config, results_dir, quiet, dry_run, out)
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: choose from {', '.join(EXECUTORS)}")
    the_plan = plan(config, results_dir, only, max_attempts)
    summary = {"total": len(the_plan.runs), "done_before": len(the_plan.done),
               "trained": [], "failed": [], "busy": [], "given_up": sorted(the_plan.given_up),
               "plan": the_plan}
    print(the_plan.summary(), file=out)
    if dry_run:
        for run in the_plan.runs:
            print(f"  {the_plan.label(run):15s} {run['run_id']}", file=out)
        return summary
    todo = the_plan.todo
    if not todo:
        return summary
    _check_engine(engine, config)
    if group_size != 1 and (engine != "jax" or train_fn is not None):
        raise ConfigError(f"--group-size {group_size}: groups train with the JAX engine only")
    data = (config.fixed["dataset"], config.fixed["train_subset"], config.fixed["val_subset"],
            config.path, config.fixed["subtract_mean"])
    resources = dict(config.resources)
    resources.update((k, v) for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus))
                     if v is not None)
    if executor == "local":  # nothing is written before the data is there
        runner = LocalExecutor(load_grid_dataset(*data, data_dir=data_dir, load_fn=load_fn,
                                                 quiet=quiet), quiet=quiet)
    else:
        from experiments.ray_executor import RayExecutor
        runner = RayExecutor(address, resources.get("num_cpus", 1),
                             resources.get("num_gpus", 0), max_retries=max_attempts,
                             quiet=quiet)
    grid_dir = the_plan.grid_dir
    if executor == "ray":  # workers do not start in this folder
        grid_dir, data_dir = (p and os.path.abspath(p) for p in (grid_dir, data_dir))
    jobs = [Job(run, os.path.join(grid_dir, run["run_id"]), engine, data_dir, data,
                max_attempts, stale_after, heartbeat, train_fn, load_fn) for run in todo]
    with runner:  # Ray is started (or not found) before anything is written
        check_grid_dir(config, the_plan.grid_dir, write=True)
        done_elsewhere = _train_jobs(runner, jobs, the_plan, summary, quiet, out,
                                     _groups(jobs, group_size, executor))
    done = summary["done_before"] + len(summary["trained"]) + done_elsewhere
    busy = f"; {len(summary['busy'])} in progress elsewhere" if summary["busy"] else ""
    print(f"{config.name}: {len(summary['trained'])} trained, {len(summary['failed'])} failed; "
          f"{done}/{summary['total']} done{busy}", file=out)
    return summary


def _groups(jobs, group_size, executor):
    """``jobs`` as the executor takes them: a job alone, or a list of jobs that train
    together (see :func:`experiments.grouping.group_runs`)."""
    if group_size == 1:
        return jobs
    from experiments.grouping import group_runs
    device = None
    if group_size == "auto" and executor == "local":
        import jax
        device = jax.devices()[0]  # its free memory sizes the groups
    by_id = {job.run_id: job for job in jobs}
    groups = group_runs([job.run for job in jobs], group_size, device=device)
    return [[by_id[r["run_id"]] for r in g] if len(g) > 1 else by_id[g[0]["run_id"]]
            for g in groups]


def _train_jobs(runner, jobs, the_plan, summary, quiet, out, items=None):
    """Run ``jobs`` (as ``items``: jobs or groups of them) on ``runner`` under the grid's
    progress bar and fill in ``summary``; runs other runners hold get a second chance,
    each alone, once the rest are through: a run whose owner still beats is left to it,
    one whose owner has stopped (died on another host) is waited for until its claim is
    stale, and trained. Returns the number of runs found done by others."""
    name, by_id = the_plan.config.name, {j.run_id: j for j in jobs}
    remaining = {j.run_id: max(j.run["epochs"] - the_plan.epochs_done[j.run_id], 0)
                 for j in jobs}
    counted, ended, busy, done_elsewhere = dict.fromkeys(remaining, 0), set(), [], 0
    bar = tqdm(total=sum(remaining.values()), unit="epoch", disable=quiet, dynamic_ncols=True,
               desc=f"{name} 0/{len(jobs)} runs", file=sys.stderr)

    def on_event(rid, kind, payload):
        if kind == "note":
            tqdm.write(f"warning: {rid}: {payload}", file=sys.stderr)
        elif rid not in ended and counted[rid] < remaining[rid]:  # late events are dropped
            counted[rid] += 1
            bar.update(1)
    try:
        for second_pass in (False, True):
            # Second pass: wait out the claims whose owners stop beating (dead elsewhere).
            todo = [dataclasses.replace(j, patient=True) for j in busy] if second_pass \
                else items or jobs
            for outcome in runner.run(todo, on_event):
                rid, result = outcome["run_id"], outcome["result"]
                if result == "user_error":
                    raise ConfigError(outcome["message"])
                if result == "storage_fault":  # from a Ray worker: as if raised here
                    raise OSError(*outcome["error"])
                if result == "busy" and not second_pass:
                    busy.append(by_id[rid])
                    continue
                ended.add(rid)
                bar.update(remaining[rid] - counted[rid])
                bar.set_description_str(f"{name} {len(ended)}/{len(jobs)} runs")
                done_elsewhere += result == "done"
                _report(outcome, summary, quiet, out)
            if not busy:
                break
    finally:
        bar.close()
    return done_elsewhere


def _report(outcome, summary, quiet, out):
    rid, result = outcome["run_id"], outcome["result"]
    if result == "trained":
        summary["trained"].append(rid)
        if not quiet:
            last = outcome.get("last") or {}
            metrics = "".join(f" {k} {last[k]:.4f}" for k in ("val_loss", "val_acc")
                              if k in last)
            tqdm.write(f"{outcome['state']} {rid}:{metrics} "
                       f"({_seconds(outcome['seconds'])})", file=out)
    elif result == "failed":
        summary["failed"].append(rid)
        path = os.path.join(outcome["run_dir"], "status.json")
        tqdm.write(f"failed {rid}: {outcome['message']} (details in {path})", file=sys.stderr)
    elif result in ("busy", "lost"):  # held on the second pass too, or taken over
        summary["busy"].append(rid)
        why = f"held by {outcome['owner']}" if result == "busy" else outcome["message"]
        tqdm.write(f"left to another runner: {rid} ({why})", file=sys.stderr)


def _run_synthetic(config, results_dir, quiet, dry_run, out):
    """The synthetic experiment is one run (all lanes in one compiled loop)."""
    from experiments import synthetic
    cfg = {"name": config.name, "kind": "synthetic", **config.fixed}
    try:
        settings = synthetic.check_config(cfg)
    except ValueError as e:
        raise ConfigError(f"{config.path}: {e}") from None
    store = RunStore(os.path.join(os.fspath(results_dir), config.name))
    expected = {"name": config.name, "kind": "synthetic", **settings}
    stored, state = store.read_config(), (store.read_status() or {}).get("state")
    if state == "finished" and stored != expected:
        diffs = ", ".join(f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in expected.items()
                          if stored.get(k) != v)
        raise ConfigError(f"{config.path}: {store.run_dir} holds a run with other settings "
                          f"({diffs}); change the config's name or use --results DIR")
    done = state == "finished"
    lanes = len(settings["problems"]) * len(settings["rules"])
    print(f"{config.name}: 1 run ({lanes} lanes x {settings['steps']:,} steps) in "
          f"{store.run_dir}: {'done' if done else 'to do'}", file=out)
    summary = {"total": 1, "done_before": int(done), "trained": [], "failed": [], "plan": None}
    if done or dry_run:
        return summary
    try:
        synthetic.run_synthetic(cfg, results_dir, quiet=quiet)
        from experiments.analysis import figures  # the figure lives with the other figures
        figures.save_figure(figures.plot_synthetic(store.run_dir),
                            os.path.join(store.run_dir, "synthetic"))
    except Exception as error:
        if storage.is_storage_fault(error):
            raise
        summary["failed"].append(config.name)
        print(f"failed {config.name}: {type(error).__name__}: {error}", file=sys.stderr)
    else:
        summary["trained"].append(config.name)
    return summary
