"""The loop that trains what a grid is missing: :func:`run_grid`.

Finished and diverged runs are done and skipped (:func:`experiments.grid.runs.plan`); any
other run is (re)trained, and a run with a checkpoint resumes from it (the trainer does
that). The runs are trained by an executor (:mod:`experiments.grid.executors`: here, or as
Ray tasks), each under a claim (:mod:`experiments.grid.claims`), so several runners can work
on one results folder at once: a run a live process holds is left to it. A run whose
starts keep ending without progress is given up after ``max_attempts`` of them.
"""
import dataclasses
import os
import sys

from tqdm.auto import tqdm

from experiments.training import metric_logs

from experiments.config import setup_keys
from experiments.results import claims
from experiments.training import grouping
from experiments.results import faults
from experiments.config import ConfigError
from experiments.grid.executors import MAX_ATTEMPTS, Job, LocalExecutor, load_grid_dataset
from experiments.grid.plan import check_grid_dir, plan
from experiments.results.store import RunStore

EXECUTORS = ("local", "ray")

__all__ = ["run_grid", "EXECUTORS"]


def _check_engine(engine, config):
    from importlib.util import find_spec
    from experiments.engines import ENGINES
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: choose from {', '.join(ENGINES)}")
    problem = setup_keys.engine_problem(engine, setup_keys.Setup.from_run(config.fixed))
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
             heartbeat=claims.HEARTBEAT, group_size="auto", metric_log=()):
    """Train the runs of ``config`` that are not done; returns a summary dict.

    Parameters
    ----------
    config : GridConfig
    results_dir : path
        Runs go to ``results_dir/<config.name>/<run id>/``.
    engine, data_dir
        Passed on to the trainer (and ``data_dir`` to the data loader).
    quiet : bool
        No progress bars (there are bars only when stderr is a terminal anyway); the
        line of each run that ends and the grid's summary are printed in every mode.
    only : list of str
        ``key=value`` filters, see :func:`experiments.grid.runs.select`.
    dry_run : bool
        Print the plan and every run's state; train nothing, write nothing.
    train_fn : callable, optional
        ``train_fn(run, store, engine=, data_dir=, dataset=, quiet=, position=, on_epoch=)
        -> status dict`` (``position`` 1: its progress bar goes below the grid's;
        ``on_epoch(row)`` after each epoch), in place of the default trainer
        :func:`experiments.training.train_runs` (one run at a time).
    load_fn : callable, optional
        ``load_fn(name, data_dir=, quiet=) -> Dataset``; default
        :func:`experiments.data.load_dataset`. Called once per grid (per Ray worker).
    out : file, optional
        Where the plan and per-run lines go (default stdout); failures go to stderr.
    executor : {'local', 'ray'}
        Train here, one run after another, or each run as a Ray task.
    address : str, optional
        Ray: the cluster to join (default: see :class:`~experiments.grid.ray_executor.RayExecutor`).
    num_cpus, num_gpus : float, optional
        Ray: what each task asks for (default: the config's ``resources:``, else 1 CPU).
    max_attempts : int
        Starts of a run that may end without progress before it is given up.
    stale_after, heartbeat : float
        Claims: seconds of silence after which another runner takes a run over, and
        seconds between a runner's signs of life (see :mod:`experiments.grid.claims`).
    group_size : int or 'auto'
        JAX engine: train up to this many compatible runs together in one compiled
        program (:func:`experiments.training.grouping.group_runs`); 1 trains one run after
        another. 'auto' (default): :func:`experiments.training.grouping.choose_group_size` on
        the device that trains them (a Ray worker's, with Ray): as many as fit in its
        memory on a GPU, and on a CPU for a dense model; 1 for a conv net on a CPU, the
        Theano engine and a custom ``train_fn``.
    metric_log : sequence of str
        Also log each run's curves to these (:data:`experiments.metric_logs.KINDS`:
        'tensorboard', 'wandb'); they change nothing of the experiment.

    Returns
    -------
    dict
        ``total``, ``done_before``, ``trained`` (run ids now finished or diverged),
        ``failed`` (run ids), ``busy`` (run ids other live runners hold),
        ``given_up`` (run ids given up before), ``plan`` (:class:`experiments.grid.runs.Plan`).
    """
    out = out or sys.stdout
    if config.kind == "synthetic":
        return _run_synthetic(config, results_dir, dry_run, out)
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
    if group_size == "auto" and not grouping.trains_groups(engine, train_fn is not None):
        group_size = 1
    if group_size != 1 and (engine != "jax" or train_fn is not None):
        raise ConfigError(f"--group-size {group_size}: groups train with the JAX engine only")
    metric_log = metric_logs.check(metric_log)
    data = (config.fixed["dataset"], config.fixed["train_subset"], config.fixed["val_subset"],
            config.path, config.fixed["subtract_mean"])
    resources = dict(config.resources)
    resources.update((k, v) for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus))
                     if v is not None)
    if executor == "local":  # nothing is written before the data is there
        runner = LocalExecutor(load_grid_dataset(*data, data_dir=data_dir, load_fn=load_fn,
                                                 quiet=quiet), quiet=quiet)
    else:
        from experiments.grid.ray_executor import RayExecutor
        runner = RayExecutor(address, resources.get("num_cpus", 1),
                             resources.get("num_gpus", 0), max_retries=max_attempts,
                             quiet=quiet)
    grid_dir = the_plan.grid_dir
    if executor == "ray":  # workers do not start in this folder
        grid_dir, data_dir = (p and os.path.abspath(p) for p in (grid_dir, data_dir))
    jobs = [Job(run, os.path.join(grid_dir, run["run_id"]), engine, data_dir, data,
                max_attempts, stale_after, heartbeat, train_fn, load_fn, metric_log=metric_log)
            for run in todo]
    with runner:  # Ray is started (or not found) before anything is written
        check_grid_dir(config, the_plan.grid_dir, write=True)
        done_elsewhere = _train_jobs(runner, jobs, the_plan, summary, quiet, out,
                                     _groups(jobs, group_size, runner))
    _summarize(config.name, summary, done_elsewhere, out)
    return summary


def _summarize(name, summary, done_elsewhere, out):
    """The grid's last line, in every mode."""
    done = summary["done_before"] + len(summary["trained"]) + done_elsewhere
    busy = f"; {len(summary['busy'])} in progress elsewhere" if summary.get("busy") else ""
    print(f"{name}: {len(summary['trained'])} trained, {len(summary['failed'])} failed; "
          f"{done}/{summary['total']} done{busy}", file=out)


def _groups(jobs, group_size, runner):
    """``jobs`` as the executor takes them: a job alone, or a list of jobs that train
    together (see :func:`experiments.training.grouping.group_runs`); 'auto' sizes them on the
    device the executor trains on."""
    if group_size == 1:
        return jobs
    platform = memory = None
    if group_size == "auto":
        platform, memory = runner.device_room()
    by_id = {job.run_id: job for job in jobs}
    groups = grouping.group_runs([job.run for job in jobs], group_size, memory=memory,
                                 platform=platform)
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
    # a bar on a terminal only: a log file (a batch job) gets the lines of _report
    bar = tqdm(total=sum(remaining.values()), unit="epoch", disable=True if quiet else None,
               dynamic_ncols=True,
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
                _report(outcome, summary, out)
            if not busy:
                break
    finally:
        bar.close()
    return done_elsewhere


def _report(outcome, summary, out):
    """One line per run that ended, in every mode (``--quiet`` too)."""
    rid, result = outcome["run_id"], outcome["result"]
    if result == "trained":
        summary["trained"].append(rid)
        last = outcome.get("last") or {}
        metrics = "".join(f" {k} {last[k]:.4f}" for k in ("val_loss", "val_acc") if k in last)
        tqdm.write(f"{outcome['state']} {rid}:{metrics} ({_seconds(outcome['seconds'])})",
                   file=out)
    elif result == "failed":
        summary["failed"].append(rid)
        path = os.path.join(outcome["run_dir"], "status.json")
        tqdm.write(f"failed {rid}: {outcome['message']} (details in {path})", file=sys.stderr)
    elif result in ("busy", "lost"):  # held on the second pass too, or taken over
        summary["busy"].append(rid)
        why = f"held by {outcome['owner']}" if result == "busy" else outcome["message"]
        tqdm.write(f"left to another runner: {rid} ({why})", file=sys.stderr)


def _run_synthetic(config, results_dir, dry_run, out):
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
        status = synthetic.run_synthetic(cfg, results_dir, quiet=True)  # its line is below
        from experiments.analysis import figures  # the figure lives with the other figures
        figures.save_synthetic(store.run_dir)
    except Exception as error:
        if faults.is_storage_fault(error):
            raise
        summary["failed"].append(config.name)
        print(f"failed {config.name}: {type(error).__name__}: {error}", file=sys.stderr)
    else:
        summary["trained"].append(config.name)
        finals = "".join(f" {k} {v:+.4f}" for k, v in status["final_x"].items())
        seconds = status["compile_seconds"] + status["run_seconds"]
        print(f"finished {config.name}: final x{finals} ({_seconds(seconds)})", file=out)
    _summarize(config.name, summary, 0, out)
    return summary
