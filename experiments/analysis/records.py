"""The analysis layer's view of a results folder: runs as records, and what a run is.

Everything that reads results for a figure, a report or a table stands on this module:
:func:`load_runs` reads every run's plain files (see :mod:`experiments.results.store`),
:func:`find_runs` turns them into :class:`Run` records, :func:`grid_axes` says which
hyperparameters tell the settings of a grid apart, and :func:`is_complete`,
:func:`is_diverged` and :func:`final_metrics` say what a run amounts to.
"""
import math
import os
from dataclasses import dataclass, field

import numpy as np
import yaml

from experiments import optimizers
from experiments.config import run_keys
from experiments.results import metrics
from experiments.results.store import CURVE_FIELDS, GRID_FILE, RunStore

__all__ = ["METRICS", "STATS", "CLIPPED_LOSS", "ResultsError", "Run", "load_runs",
           "load_results", "load_curves", "find_runs", "load_grid", "group_grids", "grid_axes",
           "setting_of", "rule_label", "is_diverged", "is_complete", "final_metrics"]

#: The metrics measured every epoch (columns of curves.csv); a run's ``curves`` also hold
#: the derived ones registered (:mod:`experiments.results.metrics`).
METRICS = ("loss", "val_loss", "acc", "val_acc")
# Per-run statistics: name -> (metric, 'final' | 'max' | 'min').
STATS = {"final_val_acc": ("val_acc", "final"), "best_val_acc": ("val_acc", "max"),
         "final_val_loss": ("val_loss", "final"), "best_val_loss": ("val_loss", "min"),
         "final_loss": ("loss", "final")}
# The loss of a saturated wrong prediction, clipped at 1e-7: where diverged CIFAR runs
# sit (0.9 * -ln(1e-7) = 14.506 with 10 balanced classes).
CLIPPED_LOSS = -0.9 * math.log(1e-7)
# Hyperparameters a run's config.yaml holds, with the value of runs written before
# the key existed (the code's default then; those runs were all Adam or AMSGrad).
_DEFAULTS = {"beta1": 0.9, "epsilon": 1e-8, "bias_correction": True, "variant": "lasagne"}
_LEGACY_UPDATERS = ("adam", "amsgrad")
_REQUIRED = ("updater", "learning_rate")


def rule_label(updater):
    """``'amsgrad'`` -> ``'AMSGrad'``: an updater as text and legends name it (its
    registry entry's label; a rule not registered here by its name)."""
    return optimizers.label(updater)


class ResultsError(Exception):
    """A results folder that cannot be read (missing, empty, malformed)."""


@dataclass
class Run:
    """One run: its hyperparameters (``hparams``: the keys of
    key table's axes (:mod:`experiments.config.run_keys`) and the axes of its grid's
    ``grid.yaml``; ``None`` for a key its rule does not take), seed, state, curves
    (``epoch`` 1-based) and its ``status.json`` (``status``: state, timings, provenance)."""
    grid: str
    path: str
    hparams: dict
    seed: int
    state: str  # running|finished|diverged|failed, or None if unknown
    epochs: int  # planned epochs (0 if unknown)
    epoch: np.ndarray = field(repr=False)
    curves: dict = field(repr=False)  # metric -> float array, aligned with epoch
    config: dict = field(default_factory=dict, repr=False)
    rows: list = field(default_factory=list, repr=False)  # curves.csv as read
    status: dict = field(default_factory=dict, repr=False)  # status.json ({} if none)

    updater = property(lambda self: self.hparams["updater"])
    learning_rate = property(lambda self: self.hparams["learning_rate"])
    beta2 = property(lambda self: self.hparams["beta2"])
    bias_correction = property(lambda self: self.hparams["bias_correction"])


def load_runs(results_dir):
    """Every run found under ``results_dir`` (any depth), sorted by path.

    Returns
    -------
    list of dict
        Keys ``name`` (grid name: the parent folder), ``run_id`` (the run's folder),
        ``path``, ``config`` (dict), ``status`` (dict or None), ``curves`` (list of
        dicts, see :meth:`~experiments.results.store.RunStore.read_curves`).
    """
    runs = []
    for folder, dirs, files in os.walk(os.fspath(results_dir)):
        dirs.sort()
        if "config.yaml" not in files:
            continue
        store = RunStore(folder)
        runs.append({"name": os.path.basename(os.path.dirname(folder)),
                     "run_id": os.path.basename(folder), "path": folder,
                     "config": store.read_config() or {}, "status": store.read_status(),
                     "curves": store.read_curves()})
    return sorted(runs, key=lambda r: r["path"])


def _frame(rows, what):
    try:
        import pandas as pd  # optional: pip install "amsgrad-experiments[pandas]"
    except ImportError:
        raise ImportError(f"{what} as a DataFrame needs pandas: pip install pandas "
                          "(or the package's [pandas] extra); without as_frame it "
                          "returns a list of dicts") from None
    return pd.DataFrame(rows)


def load_results(results_dir, as_frame=False):
    """One row per run for analysis: config fields, ``state``, final metrics, curves.

    Each row holds the run's config fields (``updater``, ``learning_rate``, ``beta2``,
    ``seed``, ...), ``grid`` (grid name), ``run_id``, ``state`` (``None`` if never
    started), ``epochs_done``, ``final_<metric>`` for each curve metric (NaN when there
    are no curves) and ``curves`` (list of dicts). With ``as_frame=True`` a pandas
    DataFrame is returned instead (pandas is optional: ImportError saying so).
    """
    rows = []
    for run in load_runs(results_dir):
        row = dict(run["config"])
        last = run["curves"][-1] if run["curves"] else {}
        row.update(grid=run["name"], run_id=run["run_id"],
                   state=(run["status"] or {}).get("state"), epochs_done=len(run["curves"]))
        row.update({f"final_{k}": last.get(k, math.nan) for k in CURVE_FIELDS[1:]})
        row["curves"] = run["curves"]
        rows.append(row)
    return _frame(rows, "load_results") if as_frame else rows


def load_curves(results_dir, as_frame=False):
    """Every curve of every training run in long format: one row per run and epoch.

    Columns: ``grid``, ``run_id``, ``state``, the run's hyperparameters (as in
    :attr:`Run.hparams`: ``updater``, ``learning_rate``, ``beta1``, ... ; ``None``
    where the run's rule does not take the key), ``seed``, then the columns of
    ``curves.csv`` (``epoch`` 1-based, ``lr`` the epoch's rate, ``loss``, ``acc``,
    ``val_loss``, ``val_acc``, ``seconds``). Runs without curves have no rows.

    With ``as_frame=True`` a pandas DataFrame (pandas is optional: an ImportError
    saying so when it is missing). One row per metric, for seaborn and the like, is
    ``frame.melt(id_vars=[...], value_vars=["loss", "acc", "val_loss", "val_acc"],
    var_name="metric")``. Raises :class:`ResultsError` as :func:`find_runs` does.
    """
    rows = []
    for run in find_runs(results_dir):
        head = {"grid": run.grid, "run_id": os.path.basename(run.path), "state": run.state,
                **run.hparams, "seed": run.seed}
        rows += [{**head, **{k: row.get(k) for k in CURVE_FIELDS}} for row in run.rows]
    return _frame(rows, "load_curves") if as_frame else rows


def _value(value):
    """A hyperparameter as records hold it: bool, float, or the string as written."""
    if isinstance(value, bool) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _hparams(config, path, keys):
    """The run's value on each of ``keys``: a key its config lacks is ``None`` (the
    rule does not take it), or for Adam and AMSGrad runs written before the key
    existed, the value the code used then."""
    where = os.path.join(path, "config.yaml")
    out = {}
    for key in keys:
        names = (key, "lr") if key == "learning_rate" else (key,)  # 'lr': early runs
        value = next((config[n] for n in names if n in config), None)
        if value is None and config.get("updater") in _LEGACY_UPDATERS:
            value = _DEFAULTS.get(key)
        if value is None and key in _REQUIRED:
            raise ResultsError(f"{where}: missing key {key!r}")
        try:
            out[key] = (str(value) if key == "updater" else bool(value)
                        if key == "bias_correction" and value is not None else _value(value))
        except (TypeError, ValueError) as e:
            raise ResultsError(f"{where}: {key}: {e}") from None
    return out


def _to_run(record, keys):
    path, config = record["path"], record["config"]
    try:
        seed = int(config["seed"])
    except KeyError:
        raise ResultsError(f"{os.path.join(path, 'config.yaml')}: missing key 'seed'") from None
    except (TypeError, ValueError) as e:
        raise ResultsError(f"{os.path.join(path, 'config.yaml')}: seed: {e}") from None
    rows = record["curves"]
    epoch = np.array([r["epoch"] for r in rows], dtype=float)  # 1-based: epochs done
    curves = {m.name: np.array([metrics.value(m, r) for r in rows], dtype=float)
              for m in metrics.metrics()}
    return Run(grid=record["name"], path=path, hparams=_hparams(config, path, keys),
               seed=seed, state=(record["status"] or {}).get("state"),
               epochs=int(config.get("epochs") or 0), epoch=epoch, curves=curves,
               config=config, rows=rows, status=dict(record["status"] or {}))


_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, yaml.YAMLError)  # json, csv too


def _one_line(error):
    return " ".join(str(error).split())


def _explain(results_dir, error):
    """Name the file that :func:`load_runs` failed on: read each run's files alone."""
    for folder, _, files in sorted(os.walk(results_dir)):
        if "config.yaml" not in files:
            continue
        store = RunStore(folder)
        for name, read in (("config.yaml", store.read_config), ("status.json", store.read_status),
                           ("curves.csv", store.read_curves)):
            try:
                read()
            except _READ_ERRORS as e:
                return f"{os.path.join(folder, name)}: {_one_line(e)}"
    return f"cannot read the results in {results_dir!r}: {_one_line(error)}"


def find_runs(results_dir):
    """The training runs under ``results_dir`` (any depth) as :class:`Run` records;
    synthetic runs are left out. Raises :class:`ResultsError` if the folder does not
    exist or a file in it cannot be read."""
    results_dir = os.fspath(results_dir)
    if not os.path.isdir(results_dir):
        raise ResultsError(f"results folder {results_dir!r} does not exist")
    try:
        records = load_runs(results_dir)
    except _READ_ERRORS as e:
        raise ResultsError(_explain(results_dir, e)) from None
    for r in records:
        if not isinstance(r["config"], dict):
            raise ResultsError(f"{os.path.join(r['path'], 'config.yaml')}: not a mapping")
    for r in records:  # rules found by name (optax's) bring their keys into the table
        if isinstance(r["config"].get("updater"), str):
            optimizers.is_rule(r["config"]["updater"])
    axes = run_keys.table().axes
    keys = {}  # a grid's hyperparameters: the table's axes, and any other its grid.yaml names
    for r in records:
        folder = os.path.dirname(r["path"])
        if folder not in keys:
            keys[folder] = axes + tuple(a for a in _declared_axes(folder, known=False)
                                        if a not in axes)
    return [_to_run(r, keys[os.path.dirname(r["path"])]) for r in records
            if r["config"].get("kind") != "synthetic"]


def load_grid(results_dir):
    """:func:`find_runs`, raising :class:`ResultsError` if there are none (naming the
    synthetic problem's results if that is what the folder holds)."""
    runs = find_runs(results_dir)
    if not runs:
        synthetic = [r["path"] for r in load_runs(results_dir)
                     if r["config"].get("kind") == "synthetic"]
        if synthetic:
            raise ResultsError(f"no training runs in results folder "
                               f"{os.fspath(results_dir)!r}, only the synthetic problem's "
                               f"result in {', '.join(synthetic)} (its figure: "
                               f"scripts/plot.py; its table of final x: scripts/report.py)")
        raise ResultsError(f"no training runs (no */config.yaml) in results folder "
                           f"{os.fspath(results_dir)!r}")
    return runs


def group_grids(runs):
    """``{grid folder: [runs]}``: a results root may hold several grids."""
    grids = {}
    for run in runs:
        grids.setdefault(os.path.dirname(run.path), []).append(run)
    return grids


def _declared_axes(folder, known=True):
    """The axes ``grid.yaml`` names (with ``known``, those of the key table only)."""
    try:
        with open(os.path.join(folder, GRID_FILE), encoding="utf-8") as f:
            axes = ((yaml.safe_load(f) or {}).get("settings") or {}).get("axes") or ()
    except (OSError, yaml.YAMLError, AttributeError):
        return ()
    if not isinstance(axes, (list, tuple)):
        return ()
    table_axes = run_keys.table().axes
    return tuple(a for a in axes if isinstance(a, str) and (a in table_axes or not known))


def grid_axes(runs):
    """The hyperparameters that tell the settings of ``runs`` apart, in
    the key table's order: the axes of each grid's ``grid.yaml``
    (so a one-value axis still names its setting) and every hyperparameter whose
    value differs between the runs (in a grid that mixes rules, one a rule does not
    take, ``None``, differs from a value). ``updater`` included; ``seed`` never."""
    axes = run_keys.table().axes
    keys = list(axes) + [k for r in runs for k in r.hparams if k not in axes]
    keys = sorted(set(keys), key=keys.index)
    declared = {a for folder in group_grids(runs) for a in _declared_axes(folder, known=False)}
    varying = {k for k in keys if len({r.hparams.get(k) for r in runs}) > 1}
    return tuple(a for a in keys if a in declared | varying)


def setting_of(run, axes):
    """``run``'s values on ``axes``: the key of its setting."""
    return tuple(run.hparams.get(a) for a in axes)


def is_diverged(run):
    """True if the run diverged: so marked, non-finite curves, or stuck at the clipped loss."""
    if run.state == "diverged":
        return True
    values = [run.curves[m] for m in METRICS]
    if any(not np.all(np.isfinite(v)) for v in values):
        return True
    return any(len(run.curves[m]) and run.curves[m][-1] >= 0.9 * CLIPPED_LOSS
               for m in ("loss", "val_loss"))


def is_complete(run):
    """Finished or diverged; runs without a state count if all planned epochs are there."""
    if run.state in ("finished", "diverged"):
        return True
    return run.state is None and run.epochs > 0 and len(run.epoch) >= run.epochs


def final_metrics(run):
    """The statistics of STATS for one run (NaN where the run has no finite value)."""
    out = {}
    for name, (metric, how) in STATS.items():
        y = run.curves[metric]
        finite = y[np.isfinite(y)]
        if how == "final":
            out[name] = float(y[-1]) if len(y) else np.nan
        else:
            out[name] = float((finite.max() if how == "max" else finite.min())
                              if finite.size else np.nan)
    return out
