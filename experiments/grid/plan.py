"""The plan of a grid: where each of its runs stands in the results folder.

Finished and diverged runs are done and skipped; any other run is (re)trained, and a
run with a checkpoint resumes from it (the trainer does that). The fixed settings of
a grid are kept in ``<results>/<name>/grid.yaml``; a config that changes them under
the same name is refused rather than mixing results of two experiments.

:func:`experiments.grid.runner.run_grid` trains what the plan says is missing.
"""
import dataclasses
import errno
import os
import re

import yaml

from experiments.config import run_keys
from experiments.config.loading import ConfigError
from experiments.config.runs import expand_grid, select
from experiments.grid.executors import MAX_ATTEMPTS
from experiments.results import faults
from experiments.results.files import atomic_write_text
from experiments.results.store import (DONE_STATES, GRID_FILE, PLAN_KEY, CorruptFileError,
                                      RunStore)

__all__ = ["grid_settings", "check_grid_dir", "record_plan", "Plan", "plan", "DONE_STATES"]


def grid_settings(config):
    """What grid.yaml records: the keys added later at their defaults left out
    (:func:`~experiments.run_keys.canonical`), so a grid of before they existed reads
    as the same; the rules' own values (``rules``) where there are any."""
    settings = {"kind": config.kind, "axes": list(config.grid),
                **run_keys.canonical(config.fixed)}
    if config.rules:
        settings["rules"] = config.to_dict()["rules"]
    return settings


def _as_then(stored, model):
    """A stored grid or run config with the setup keys it lacks at the values the code
    used before they existed (as it stands if it is not a config at all)."""
    try:
        return run_keys.resolve({"model": model, **stored})
    except (TypeError, ValueError, KeyError):
        return stored


def check_grid_dir(config, grid_dir, write=False):
    """Refuse ``grid_dir`` if it holds a grid of other fixed settings (``grid.yaml``);
    with ``write``, record this config's settings there when there are none yet."""
    path = os.path.join(grid_dir, GRID_FILE)
    settings = grid_settings(config)
    try:
        with open(path, encoding="utf-8") as f:
            stored = (yaml.safe_load(f) or {}).get("settings")
    except FileNotFoundError:
        stored = None
    except (OSError, yaml.YAMLError, AttributeError) as e:
        if faults.is_storage_fault(e):
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
    stored, settings = _as_then(stored, settings["model"]), run_keys.resolve(settings)
    if stored != settings:
        missing = "(unset)"
        diffs = "; ".join(f"{k}: {stored.get(k, missing)!r} -> {settings.get(k, missing)!r}"
                          for k in sorted(set(stored) | set(settings), key=str)
                          if stored.get(k, missing) != settings.get(k, missing))
        raise ConfigError(f"{config.path}: {grid_dir} holds a grid with other fixed settings "
                          f"({diffs}); change the config's name or use --results DIR")


def record_plan(grid_dir, run_ids):
    """Add ``run_ids`` to ``planned_runs`` in ``grid_dir``'s grid.yaml (:data:`PLAN_KEY`:
    every run the grid's configs have asked for, so a report can count the runs not
    started yet). The list is the file's last key and is rewritten alone: the keys before
    it stay as they are, byte for byte (a grid.yaml of before gains the key at its end)."""
    path = os.path.join(grid_dir, GRID_FILE)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    data = yaml.safe_load(text) or {}
    planned = data.get(PLAN_KEY) if isinstance(data.get(PLAN_KEY), list) else []
    planned = [str(r) for r in planned]
    ids = planned + [r for r in run_ids if r not in set(planned)]
    if ids == planned and PLAN_KEY in data:
        return
    found = re.search(rf"^{PLAN_KEY}:", text, re.MULTILINE)
    head = text[:found.start()] if found else text
    new = (head if not head or head.endswith("\n") else head + "\n") + \
        yaml.safe_dump({PLAN_KEY: ids}, sort_keys=False)
    kept = {k: v for k, v in (yaml.safe_load(new) or {}).items() if k != PLAN_KEY}
    if kept != {k: v for k, v in data.items() if k != PLAN_KEY}:
        return  # a file edited by hand, the list not last: left as it is
    atomic_write_text(path, new)


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
    planned: list = dataclasses.field(default_factory=list)  # every run id of the grid

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
    every = expand_grid(config)
    runs = select(every, config, only)
    the_plan = Plan(config, grid_dir, runs, {}, {}, max_attempts=max_attempts,
                    planned=[r["run_id"] for r in every])
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
