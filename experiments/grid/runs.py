"""Grids of runs: expansion, run ids, ``--only``, the grid folder's settings, the plan.

A grid config (see :mod:`experiments.config`) expands into one run per seed and
combination of axis values. Runs go to ``<results>/<name>/<run id>/`` (see
:mod:`experiments.results.store`). Run ids name the axes of the config's ``grid:`` (even an
axis with a single value, so that adding values later keeps the ids) and the seed,
in a fixed order: ``amsgrad_lr=0.001_b2=0.999_bc=on_seed=3``.

Finished and diverged runs are done and skipped; any other run is (re)trained, and a
run with a checkpoint resumes from it (the trainer does that). The fixed settings of
a grid are kept in ``<results>/<name>/grid.yaml``; a config that changes them under
the same name is refused rather than mixing results of two experiments. ``--epochs``
changes the learning-rate schedule, so its results go to ``<name>_epochs=<N>``.

:func:`experiments.grid.runner.run_grid` trains what the plan says is missing.
"""
import dataclasses
import errno
import itertools
import os

import yaml

from experiments import setup
from experiments.results import storage
from experiments.config import AXES, TRAIN_KEYS, ConfigError, check_value, did_you_mean
from experiments.grid.executors import MAX_ATTEMPTS
from experiments.results.files import atomic_write_text
from experiments.results.store import DONE_STATES, GRID_FILE, CorruptFileError, RunStore

# How each axis appears in run ids (None: the bare value); also accepted by --only.
ID_LABELS = {"updater": None, "learning_rate": "lr", "beta1": "b1", "beta2": "b2",
             "epsilon": "eps", "bias_correction": "bc"}

__all__ = ["expand_grid", "run_id", "with_epochs", "select", "check_grid_dir", "Plan",
           "plan", "DONE_STATES"]


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
