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
"""
import dataclasses
import itertools
import os
import sys
import time
import traceback

import yaml
from tqdm.auto import tqdm

from experiments.config import AXES, TRAIN_KEYS, ConfigError, check_value, did_you_mean
from experiments.results import RunStore, atomic_write_text

# How each axis appears in run ids (None: the bare value); also accepted by --only.
ID_LABELS = {"updater": None, "learning_rate": "lr", "beta1": "b1", "beta2": "b2",
             "epsilon": "eps", "bias_correction": "bc"}
DONE_STATES = ("finished", "diverged")
GRID_FILE = "grid.yaml"

__all__ = ["expand_grid", "run_id", "with_epochs", "select", "check_grid_dir", "Plan",
           "plan", "run_grid", "DONE_STATES"]


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
    setting of :data:`~experiments.config.TRAIN_KEYS` and ``seed``.
    """
    if config.kind != "train":
        raise ValueError(f"{config.path}: a {config.kind} config has no grid of runs")
    axes = list(config.grid)
    runs = []
    for seed in config.seeds:
        for values in itertools.product(*config.grid.values()):
            settings = {**config.fixed, **dict(zip(axes, values)), "seed": seed}
            run = {"name": config.name, "run_id": run_id(settings, axes)}
            run.update((k, settings[k]) for k in TRAIN_KEYS)
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
    return {"kind": config.kind, "axes": list(config.grid), **config.fixed}


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
        raise ConfigError(f"{path}: unreadable ({type(e).__name__}); remove it or use "
                          f"another --results") from None
    if stored is None:
        if write:
            atomic_write_text(path, "# The fixed settings of this grid; results of other "
                                    "settings go elsewhere.\n"
                              + yaml.safe_dump({"name": config.name, "config": config.path,
                                                "settings": settings}, sort_keys=False))
        return
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
    ``epochs_done``: run id -> epochs in curves.csv)."""
    config: object
    grid_dir: str
    runs: list
    states: dict
    epochs_done: dict

    @property
    def done(self):
        return [r for r in self.runs if self.states[r["run_id"]] in DONE_STATES]

    @property
    def todo(self):
        return [r for r in self.runs if self.states[r["run_id"]] not in DONE_STATES]

    def label(self, run):
        """``finished``, ``diverged``, ``failed``, ``partial 37/150`` or ``new``."""
        state, done = self.states[run["run_id"]], self.epochs_done[run["run_id"]]
        if state in DONE_STATES or state == "failed":
            return state
        return f"partial {done}/{run['epochs']}" if done or state else "new"

    def summary(self):
        counts = {}
        for run in self.runs:
            label = self.label(run).split()[0]
            counts[label] = counts.get(label, 0) + 1

        def part(labels):
            found = [f"{counts[k]} {k}" for k in labels if counts.get(k)]
            return f" ({', '.join(found)})" if found else ""
        n = len(self.runs)
        return (f"{self.config.name}: {n} run{'s' if n != 1 else ''} in {self.grid_dir}: "
                f"{len(self.done)} done{part(DONE_STATES)}, {len(self.todo)} to do"
                f"{part(('partial', 'failed', 'new'))}")


def plan(config, results_dir="results", only=()):
    """Expand ``config``, select ``only``, and read where each run stands.

    Raises :class:`ConfigError` if the grid folder holds other settings, or a started
    run was configured differently.
    """
    grid_dir = os.path.join(os.fspath(results_dir), config.name)
    if os.path.exists(results_dir) and not os.path.isdir(results_dir):
        raise ConfigError(f"--results {results_dir}: not a folder")
    check_grid_dir(config, grid_dir)
    runs = select(expand_grid(config), config, only)
    states, epochs_done = {}, {}
    for run in runs:
        store = RunStore(os.path.join(grid_dir, run["run_id"]))
        stored = store.read_config()
        if stored is not None and {k: stored.get(k) for k in run} != run:
            diffs = ", ".join(f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in run.items()
                              if stored.get(k) != v)
            raise ConfigError(f"{config.path}: {store.run_dir} was configured otherwise "
                              f"({diffs}); move it away or use --results DIR")
        states[run["run_id"]] = (store.read_status() or {}).get("state")
        epochs_done[run["run_id"]] = len(store.read_curves())
    return Plan(config, grid_dir, runs, states, epochs_done)


def _subset(config, dataset, train, val):
    """The first ``train`` / ``val`` examples (``None``: all); slicing twice is harmless."""
    for key, n, have in (("train_subset", train, len(dataset.y_train)),
                         ("val_subset", val, len(dataset.y_val))):
        if n is not None and n > have:
            raise ConfigError(f"{config.path}: key {key!r}: {n} is more than the {have} "
                              f"examples {dataset.name} has")
    if train is None and val is None:
        return dataset
    return dataclasses.replace(dataset, x_train=dataset.x_train[:train],
                               y_train=dataset.y_train[:train],
                               x_val=dataset.x_val[:val], y_val=dataset.y_val[:val])


def _check_engine(engine):
    from importlib.util import find_spec
    from experiments.engines import ENGINES
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: choose from {', '.join(ENGINES)}")
    if find_spec(engine) is None:
        raise ConfigError(f"--engine {engine}: {engine} is not installed in this Python "
                          f"({sys.executable})")


def _seconds(s):
    h, rest = divmod(int(round(s)), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


def run_grid(config, results_dir="results", engine="jax", data_dir=None, only=(),
             quiet=False, dry_run=False, train_fn=None, load_fn=None, out=None):
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
        ``train_fn(run, store, engine=, data_dir=, dataset=, quiet=, position=) ->
        status dict`` (``position`` 1: its progress bar goes below the grid's);
        default :func:`experiments.training.train_run`.
    load_fn : callable, optional
        ``load_fn(name, data_dir=, quiet=) -> Dataset``; default
        :func:`experiments.data.load_dataset`. Called once per grid.
    out : file, optional
        Where the plan and per-run lines go (default stdout); failures go to stderr.

    Returns
    -------
    dict
        ``total``, ``done_before``, ``trained`` (run ids now finished or diverged),
        ``failed`` (run ids), ``plan`` (:class:`Plan`).
    """
    out = out or sys.stdout
    if config.kind == "synthetic":
        return _run_synthetic(config, results_dir, quiet, dry_run, out)
    the_plan = plan(config, results_dir, only)
    summary = {"total": len(the_plan.runs), "done_before": len(the_plan.done),
               "trained": [], "failed": [], "plan": the_plan}
    print(the_plan.summary(), file=out)
    if dry_run:
        for run in the_plan.runs:
            print(f"  {the_plan.label(run):15s} {run['run_id']}", file=out)
        return summary
    todo = the_plan.todo
    if not todo:
        return summary
    _check_engine(engine)
    from experiments.data import DataError
    if load_fn is None:
        from experiments.data import load_dataset as load_fn
    dataset = _subset(config, load_fn(config.fixed["dataset"], data_dir=data_dir, quiet=quiet),
                      config.fixed["train_subset"], config.fixed["val_subset"])
    if train_fn is None:
        from experiments.training import train_run as train_fn
    check_grid_dir(config, the_plan.grid_dir, write=True)

    remaining = {r["run_id"]: max(r["epochs"] - the_plan.epochs_done[r["run_id"]], 0)
                 for r in todo}
    bar = tqdm(total=sum(remaining.values()), unit="epoch", disable=quiet, dynamic_ncols=True,
               desc=f"{config.name} 0/{len(todo)} runs", file=sys.stderr)
    try:
        for i, run in enumerate(todo):
            rid = run["run_id"]
            store = RunStore(os.path.join(the_plan.grid_dir, rid))
            store.write_config(run)
            bar.set_postfix_str(rid, refresh=True)
            start = time.time()
            try:
                status = train_fn(run, store, engine=engine, data_dir=data_dir,
                                  dataset=dataset, quiet=quiet, position=1)
                state = (status or store.read_status() or {}).get("state")
                if state not in DONE_STATES:
                    raise RuntimeError(f"training returned in state {state!r}")
            except DataError:
                raise  # a user mistake, not a failed run
            except Exception as error:
                message = f"{type(error).__name__}: {error}".splitlines()[0]
                store.update_status(state="failed", error=message,
                                    traceback=traceback.format_exc(),
                                    failed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
                summary["failed"].append(rid)
                tqdm.write(f"failed {rid}: {message} (details in {store.status_path})",
                           file=sys.stderr)
            else:
                summary["trained"].append(rid)
                if not quiet:
                    last = (store.read_curves() or [{}])[-1]
                    metrics = "".join(f" {k} {last[k]:.4f}" for k in ("val_loss", "val_acc")
                                      if k in last)
                    tqdm.write(f"{state} {rid}:{metrics} ({_seconds(time.time() - start)})",
                               file=out)
            bar.set_description_str(f"{config.name} {i + 1}/{len(todo)} runs")
            bar.update(remaining[rid])
    finally:
        bar.close()
    print(f"{config.name}: {len(summary['trained'])} trained, {len(summary['failed'])} failed; "
          f"{summary['done_before'] + len(summary['trained'])}/{summary['total']} done",
          file=out)
    return summary


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
    except Exception as error:
        summary["failed"].append(config.name)
        print(f"failed {config.name}: {type(error).__name__}: {error}", file=sys.stderr)
    else:
        summary["trained"].append(config.name)
    return summary
