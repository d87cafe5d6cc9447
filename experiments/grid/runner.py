"""The loop that trains what a grid is missing: :func:`run_grid`.

Finished and diverged runs are done and skipped (:func:`experiments.grid.plan.plan`); any
other run is (re)trained, and a run with a checkpoint resumes from it (the trainer does
that). The runs are trained by an executor (:mod:`experiments.grid.executors`: here, or
as Ray tasks), each under a claim (:mod:`experiments.results.claims`), so several runners
can work on one results folder at once: a run a live process holds is left to it. A run
whose starts keep ending without progress is given up after ``max_attempts`` of them.
How to run it is one :class:`~experiments.grid.options.GridOptions`.
"""
import dataclasses
import os
import sys

from tqdm.auto import tqdm

from experiments import optimizers
from experiments.config import run_keys
from experiments.config.loading import ConfigError
from experiments.data import DataError, DataRequest
from experiments.engines import get_engine
from experiments.grid import cost
from experiments.grid.executors import Job, LocalExecutor
from experiments.grid.options import GridOptions
from experiments.grid.ray_executor import RayExecutor
from experiments.grid.plan import check_grid_dir, plan, record_plan
from experiments.results import faults
from experiments.training import grouping, metric_logs
from experiments.training.progress import duration, summary_line

EXECUTORS = ("local", "ray")

__all__ = ["run_grid", "EXECUTORS", "GridOptions"]


def _check_engine(engine, config):
    """The engine's entry, once it is known to train this grid here: registered,
    able to (its abilities), installed."""
    try:
        entry = get_engine(engine)
    except ValueError as e:
        raise ConfigError(f"--engine {engine!r}: {e}") from None
    rules = [optimizers.get_rule(u) for u in config.updaters()]
    problem = entry.problem(run_keys.setup_of(config.fixed), rules)
    if problem:
        raise ConfigError(f"{config.path}: {problem}")
    if not entry.installed():
        raise ConfigError(f"--engine {engine}: {entry.abilities.library} is not installed "
                          f"in this Python ({sys.executable})")
    # imported now: what it needs of the disk (Theano's compile cache) is said before a
    # run is claimed, not counted as the runs' attempts
    entry.load()
    return entry


def _load_data(config, options):
    """The grid's dataset, loaded once and prepared (a subset too large for it is the
    config's mistake)."""
    try:
        return DataRequest.of(config.fixed).load(options.data_dir, options.load_fn,
                                                 options.quiet)
    except DataError as error:
        if error.key is None:
            raise
        raise ConfigError(f"{config.path}: {error}", key=error.key) from None


def run_grid(config, options=None, **changes):
    """Train the runs of ``config`` (a :class:`~experiments.config.GridConfig`) that are
    not done; returns a summary dict.

    ``options`` is a :class:`~experiments.grid.options.GridOptions` (where results go,
    the engine, the executor, ``--only``, group sizes, ...); keyword arguments change
    its fields (``run_grid(config, results_dir=..., dry_run=True)``).

    Returns
    -------
    dict
        ``total``, ``done_before``, ``trained`` (run ids now finished or diverged),
        ``failed`` (run ids), ``busy`` (run ids other live runners hold),
        ``given_up`` (run ids given up before), ``plan`` (:class:`experiments.grid.plan.Plan`).
    """
    options = dataclasses.replace(options or GridOptions(), **changes)
    out = options.out or sys.stdout
    if options.executor not in EXECUTORS:
        raise ConfigError(f"--executor {options.executor!r}: choose from {', '.join(EXECUTORS)}")
    the_plan = plan(config, options.results_dir, options.only, options.max_attempts)
    summary = {"total": len(the_plan.runs), "done_before": len(the_plan.done),
               "trained": [], "failed": [], "busy": [], "given_up": sorted(the_plan.given_up),
               "plan": the_plan}
    print(the_plan.summary(), file=out)
    if options.dry_run:
        _print_cost(the_plan, options, out)
        for run in the_plan.runs:
            print(f"  {the_plan.label(run):15s} {run['run_id']}", file=out)
        return summary
    if not the_plan.todo:
        _record_plan_of_done_grid(the_plan)
        return summary
    entry = _check_engine(options.engine, config)
    _print_cost(the_plan, options, out)
    custom = options.train_fn is not None
    group_size = options.group_size
    if group_size == "auto" and not grouping.trains_groups(entry.name, custom):
        group_size = 1
    if group_size != 1 and not grouping.trains_groups(entry.name, custom):
        raise ConfigError(f"--group-size {group_size}: the {entry.name} engine"
                          f"{' with a custom trainer' if custom else ''} trains one run at "
                          f"a time")
    metric_log = metric_logs.check(options.metric_log)
    with _executor(config, options) as runner:  # Ray is started (or not) before any write
        check_grid_dir(config, the_plan.grid_dir, write=True)
        record_plan(the_plan.grid_dir, the_plan.planned)
        jobs = _jobs(the_plan, options, metric_log)
        done_elsewhere = _train_jobs(runner, jobs, the_plan, summary, options.quiet, out,
                                     _groups(jobs, group_size, runner, entry.name))
    if options.epilogue is not None and summary["trained"]:
        _epilogue(options.epilogue, the_plan.grid_dir, out)
    print(summary_line(config.name, summary, done_elsewhere), file=out)
    return summary


def _record_plan_of_done_grid(the_plan):
    """A grid an earlier version finished has no plan in grid.yaml: add it, so its report
    can count the plan's runs. A folder that cannot be written is left as it is (the
    plan helps a report; reading finished results must not need write access)."""
    try:
        record_plan(the_plan.grid_dir, the_plan.planned)
    except OSError:
        pass


def _epilogue(epilogue, grid_dir, out):
    """The epilogue's lines; one that fails says so in a warning (the runs are done)."""
    try:
        lines = epilogue(grid_dir)
    except Exception as error:  # noqa: BLE001 (a view of the results, not the grid)
        print(f"warning: no summary of the best settings: {type(error).__name__}: {error}",
              file=sys.stderr)
        return
    for line in lines:
        print(line, file=out)


def _print_cost(the_plan, options, out):
    """The plan's FLOPs and time (:mod:`experiments.grid.cost`), when it has runs to
    train; the device is known here for the local executor only."""
    if the_plan.todo:
        device = cost.local_device(options.engine) if options.executor == "local" else None
        print(cost.cost_lines(the_plan, options.engine, device), file=out)


def _executor(config, options):
    """The executor the options ask for: local (the data loaded now, before anything is
    written) or Ray (each task asking the config's resources, or the options')."""
    if options.executor == "local":
        return LocalExecutor(_load_data(config, options), quiet=options.quiet)
    resources = dict(config.resources)
    resources.update((k, v) for k, v in (("num_cpus", options.num_cpus),
                                         ("num_gpus", options.num_gpus)) if v is not None)
    return RayExecutor(options.address, resources.get("num_cpus", 1),
                       resources.get("num_gpus", 0), max_retries=options.max_attempts,
                       quiet=options.quiet)


def _jobs(the_plan, options, metric_log):
    """A :class:`~experiments.grid.executors.Job` per run to train."""
    grid_dir, data_dir = the_plan.grid_dir, options.data_dir
    if options.executor == "ray":  # workers do not start in this folder
        grid_dir, data_dir = (p and os.path.abspath(p) for p in (grid_dir, data_dir))
    data = DataRequest.of(the_plan.config.fixed)
    return [Job(run, os.path.join(grid_dir, run["run_id"]), options.engine, data_dir, data,
                options.max_attempts, options.stale_after, options.heartbeat,
                options.train_fn, options.load_fn, metric_log=metric_log)
            for run in the_plan.todo]


def _groups(jobs, group_size, runner, engine):
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
                                 platform=platform, engine=engine)
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
                    if "message" in outcome:
                        raise faults.StorageError(outcome["message"])
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
        tqdm.write(f"{outcome['state']} {rid}:{metrics} ({duration(outcome['seconds'])})",
                   file=out)
    elif result == "failed":
        summary["failed"].append(rid)
        path = os.path.join(outcome["run_dir"], "status.json")
        tqdm.write(f"failed {rid}: {outcome['message']} (details in {path})", file=sys.stderr)
    elif result in ("busy", "lost"):  # held on the second pass too, or taken over
        summary["busy"].append(rid)
        why = f"held by {outcome['owner']}" if result == "busy" else outcome["message"]
        tqdm.write(f"left to another runner: {rid} ({why})", file=sys.stderr)
