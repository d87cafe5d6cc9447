"""Two grids compared setting by setting: a grid against a ``--set`` copy of it (another
beta2, more epochs), or the same grid run by two versions of the code.

A setting is a run's rule and its values on the axes of either grid (a value one grid
fixes counts as that value), so the settings compared are those both grids hold. Where
runs of one setting share seeds across the grids (same initial weights and data order)
they are compared paired by seed, as within a grid; otherwise unpaired, with Welch's
t-test. Differences are first grid minus second; the p-values are Holm-adjusted across the
settings of each statistic. What else differs -- config keys, and the provenance of the
runs (commit, library versions) -- is listed with the result.
"""
import os

import numpy as np

from experiments.analysis.findings import verdict_counts
from experiments.analysis.progress import grid_progress
from experiments.analysis.provenance import provenance, provenance_changes
from experiments.analysis.records import final_metrics, grid_axes, is_complete, setting_of
from experiments.analysis.stats import COMPARED, holm, paired_test, welch_test

__all__ = ["setting_keys", "config_differences", "compare_setting", "compare_grids"]

# Config keys that name a run rather than set it up.
_NAMING = ("name", "run_id", "seed")


def setting_keys(runs_a, runs_b):
    """The axes of either grid (``updater`` first): a setting is a run's values on them."""
    axes_a, axes_b = grid_axes(runs_a), grid_axes(runs_b)
    axes = list(dict.fromkeys(["updater", *axes_a, *axes_b]))
    return tuple(axes)


def _shown(value):
    return f"{value:g}" if isinstance(value, float) and not isinstance(value, bool) \
        else str(value).lower() if isinstance(value, bool) else str(value)


def config_differences(runs_a, runs_b):
    """``[(key, values in a, values in b)]``: each config key (run ids, names and seeds
    aside) whose set of values differs between the grids, the values as text, sorted
    (a key a grid lacks: no values)."""
    keys = list(dict.fromkeys(k for r in [*runs_a, *runs_b] for k in r.config))
    out = []
    for key in keys:
        if key in _NAMING:
            continue
        values = [sorted({_shown(r.config[key]) for r in runs if key in r.config},
                         key=_sort_key) for runs in (runs_a, runs_b)]
        if values[0] != values[1]:
            out.append((key, *values))
    return out


def _sort_key(text):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _finals(runs, stat):
    return {r.seed: final_metrics(r)[stat] for r in runs if is_complete(r)}


def compare_setting(runs_a, runs_b, stat):
    """One setting's runs of each grid compared on ``stat``: paired by seed over the
    seeds both have completed (when there are 2 or more), else unpaired (Welch).

    Returns the keys of :func:`~experiments.analysis.stats.paired_test` or
    :func:`~experiments.analysis.stats.welch_test`, and ``test`` (``paired`` |
    ``welch``), ``seeds`` (the pairs' seeds, or none), ``n_a``, ``n_b`` (runs used),
    ``mean_a``, ``mean_b``, ``effect`` (``d_z`` paired, ``d`` unpaired) and
    ``effect_name``.
    """
    a, b = _finals(runs_a, stat), _finals(runs_b, stat)
    common = sorted(set(a) & set(b))
    if len(common) >= 2:
        xa, xb = [a[s] for s in common], [b[s] for s in common]
        res = {**paired_test(xa, xb), "test": "paired", "seeds": common, "n_a": len(common),
               "n_b": len(common), "effect_name": "d_z"}
        res["effect"] = res["d_z"]
    else:
        xa, xb = list(a.values()), list(b.values())
        res = {**welch_test(xa, xb), "test": "welch", "seeds": [], "effect_name": "d",
               "sd": np.nan}
        res.update(n=min(len(xa), len(xb)), effect=res["d"])
    res.update(mean_a=float(np.mean(xa)) if xa else np.nan,
               mean_b=float(np.mean(xb)) if xb else np.nan)
    return res


def _groups(runs, axes):
    groups = {}
    for r in runs:
        groups.setdefault(setting_of(r, axes), []).append(r)
    return groups


def _order(axes):
    """Settings sorted as the single-grid report sorts them (rule, then lr large to small,
    bias correction on first, other values ascending; None last)."""
    def one(a, v):
        if v is None:
            return (1, 0, "")
        if isinstance(v, str):
            return (0, 0, v)
        return (0, -v if a == "learning_rate" else (not v) if a == "bias_correction" else v, "")
    return lambda key: tuple(one(a, v) for a, v in zip(axes, key))


def _names(runs_a, runs_b):
    """The grids' folder names; with their parent folders where those are the same (the
    same grid run twice: ``old/logreg``, ``new/logreg``)."""
    folders = [os.path.dirname(runs[0].path) if runs else "?" for runs in (runs_a, runs_b)]
    names = [os.path.basename(f) for f in folders]
    if names[0] == names[1]:
        names = [os.path.join(os.path.basename(os.path.dirname(f)), n).replace(os.sep, "/")
                 for f, n in zip(folders, names)]
    return tuple(names)


def compare_grids(runs_a, runs_b, names=None):
    """Compare the runs of two grids setting by setting.

    Returns a dict: ``names`` (the grids' folder names, with their parents' where the
    two are the same; or ``names``), ``axes`` (the keys
    of a setting, :func:`setting_keys`), ``settings_a``/``settings_b`` (how many each
    holds), ``shared`` (how many both hold), ``differences`` (:func:`config_differences`),
    ``provenance`` (each grid's, :func:`~experiments.analysis.provenance.provenance`),
    ``changes`` (:func:`~experiments.analysis.provenance.provenance_changes`),
    ``progress`` (each grid's), ``tests`` (``{stat: [row per shared setting]}``, each row
    the setting's values on ``axes`` and the keys of :func:`compare_setting`, with
    ``p_holm``) and ``verdicts`` (``{stat: counts}``, see
    :func:`~experiments.analysis.findings.verdict_counts`; "baseline" is the first grid).
    """
    axes = setting_keys(runs_a, runs_b)
    groups_a, groups_b = _groups(runs_a, axes), _groups(runs_b, axes)
    shared = sorted(set(groups_a) & set(groups_b), key=_order(axes))
    names = names or _names(runs_a, runs_b)
    provs = provenance(runs_a), provenance(runs_b)
    out = {"names": tuple(names), "axes": axes, "settings_a": len(groups_a),
           "settings_b": len(groups_b), "shared": len(shared),
           "differences": config_differences(runs_a, runs_b), "provenance": provs,
           "changes": provenance_changes(*provs),
           "progress": (grid_progress(runs_a), grid_progress(runs_b)), "tests": {},
           "verdicts": {}}
    for stat, _, higher in COMPARED:
        rows = [{**dict(zip(axes, key)), **compare_setting(groups_a[key], groups_b[key], stat)}
                for key in shared]
        for row, p in zip(rows, holm([r["p"] for r in rows])):
            row["p_holm"] = float(p)
        out["tests"][stat] = rows
        out["verdicts"][stat] = verdict_counts(rows, higher)
    return out
