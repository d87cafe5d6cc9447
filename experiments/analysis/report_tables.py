"""The machine-readable forms of a report: ``report.csv`` (one row per test) and
``report.json`` (findings first, then everything), from the result of
:func:`experiments.analysis.stats.analyse`. Numbers here keep full precision; the
Markdown (:mod:`experiments.analysis.report`) rounds them for people.
"""
import csv
import io
import json

import numpy as np

from experiments.analysis.stats import ALPHA, COMPARED

__all__ = ["plain", "tests", "report_csv", "report_json"]

_TEST_KEYS = ("n", "mean", "sd", "d_z", "t", "p", "p_holm", "p_wilcoxon")


def plain(value):
    """JSON-able: NaN -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def _takes(result, updater, axis):
    return any(r[axis] is not None for r in result["summary"] if r["updater"] == updater)


def tests(result):
    """Every test of the report, one dict each (the CSV's rows), the key finding first:
    each candidate's best setting against the baseline's, then the setting-by-setting
    tests. Each holds the keys of :func:`~experiments.analysis.stats.paired_test` and
    the settings compared as mappings of the axes (None where the rule does not take
    the axis)."""
    axes, baseline = result["axes"], result["baseline"]

    def setting(row, updater):
        return {a: row[a] if _takes(result, updater, a) else None for a in axes}

    best, by_setting = [], []
    for c in result["candidates"]:
        bvb = result["best_vs_best"][c]
        if bvb is not None:
            best.append({**bvb, "comparison": "best", "stat": "final_val_acc",
                         "p_holm": np.nan, "baseline": baseline, "candidate": c,
                         "setting": setting(bvb["candidate"], c),
                         "baseline_setting": setting(bvb["baseline"], baseline)})
        for stat, _, _ in COMPARED:
            for row in result["setting"][c][stat] if result["setting"][c] else ():
                by_setting.append({**row, "comparison": "setting", "stat": stat,
                                   "baseline": baseline, "candidate": c,
                                   "setting": setting(row, c),
                                   "baseline_setting": setting(row, baseline)})
    return best + by_setting


def _csv_cell(value):
    value = plain(value)
    return "" if value is None else repr(value) if isinstance(value, float) else value


def report_csv(result):
    """``report.csv``: one row per test, best against best first, then setting by
    setting.

    Columns: ``comparison`` (``best`` | ``setting``), ``stat``, ``baseline``,
    ``candidate``, the candidate's value on each axis, ``baseline_<axis>`` (the
    baseline's setting; for ``setting`` rows the same on the baseline's axes),
    ``seeds`` (space-separated), ``n``, ``mean`` (baseline − candidate), ``ci_low``,
    ``ci_high``, ``sd``, ``d_z``, ``t``, ``p``, ``p_holm``, ``p_wilcoxon``. Empty
    cells: undefined (NaN) or a hyperparameter the rule does not take.
    """
    axes = result["axes"]
    header = (["comparison", "stat", "baseline", "candidate", *axes]
              + [f"baseline_{a}" for a in axes]
              + ["seeds", "n", "mean", "ci_low", "ci_high", "sd", "d_z", "t", "p", "p_holm",
                 "p_wilcoxon"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for t in tests(result):
        writer.writerow([t["comparison"], t["stat"], t["baseline"], t["candidate"]]
                        + [_csv_cell(t["setting"][a]) for a in axes]
                        + [_csv_cell(t["baseline_setting"][a]) for a in axes]
                        + [" ".join(str(s) for s in t["seeds"]), t["n"], _csv_cell(t["mean"]),
                           _csv_cell(t["ci"][0]), _csv_cell(t["ci"][1])]
                        + [_csv_cell(t[k]) for k in ("sd", "d_z", "t", "p", "p_holm",
                                                     "p_wilcoxon")])
    return buf.getvalue()


def report_json(result, title=None, findings=None, progress=None, provenance=None):
    """``report.json``: the key findings first (``findings``: texts and counts of
    :func:`~experiments.analysis.findings.key_findings`; ``progress`` of the grid,
    :func:`~experiments.analysis.progress.grid_progress`), then the comparison, the
    ``provenance`` summary, the per-setting summary, each rule's best setting and every
    test (the CSV's rows, settings as mappings); NaN as null."""
    keys = ("comparison", "stat", "baseline", "candidate", "setting", "baseline_setting",
            "seeds", "ci") + _TEST_KEYS
    data = {"title": title, "findings": findings, "progress": progress,
            "baseline": result["baseline"], "candidates": result["candidates"],
            "axes": list(result["axes"]), "alpha": ALPHA, "provenance": provenance,
            "summary": result["summary"],
            "best": {u: {a: r[a] for a in result["axes"]} for u, r in result["best"].items()},
            "tests": [{k: t[k] for k in keys} for t in tests(result)]}
    return json.dumps(plain(data), indent=1, allow_nan=False) + "\n"
