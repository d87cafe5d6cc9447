"""The synthetic problem's report: where each lane ends (does it reach the optimum
x = -1?), from its ``trajectories.csv`` (:mod:`experiments.synthetic`).

Per lane (problem, rule, beta2): the final x, the mean x over the last tenth of the
steps (the stochastic problem's x wanders, and AdaBound-like rules bounce), and the
first recorded step with x <= -0.99. Written as ``report.md`` (a table per problem:
a row per rule, a column per beta2) and ``report.csv`` (a row per lane).
"""
import csv
import io
import os

import numpy as np

from experiments.analysis import style
from experiments.analysis.records import rule_label
from experiments.analysis.synthetic_figure import lane_parts, read_synthetic
from experiments.config.synthetic_keys import lane_rule
from experiments.results.files import atomic_write_text

__all__ = ["NEAR_OPTIMUM", "LAST_PART", "lane_summary", "write_synthetic_report"]

NEAR_OPTIMUM = -0.99  # x at or below this counts as at the optimum
LAST_PART = 0.1       # the mean over this last part of the steps


def lane_summary(results_dir):
    """A dict per lane, in the registry's rule order: ``problem, rule, beta2`` (None
    without a sweep), ``final_x``, ``mean_x_last`` (over the last :data:`LAST_PART` of
    the steps), ``first_near_optimum`` (the first recorded step with x <=
    :data:`NEAR_OPTIMUM`, None if never) and ``steps``."""
    rows = []
    for (problem, lane), (steps, x) in read_synthetic(results_dir).items():
        rule, beta2 = lane_parts(lane)
        last = steps >= steps[-1] * (1 - LAST_PART)
        near = np.flatnonzero(x <= NEAR_OPTIMUM)
        rows.append({"problem": problem, "rule": rule, "beta2": beta2,
                     "final_x": float(x[-1]), "mean_x_last": float(x[last].mean()),
                     "first_near_optimum": int(steps[near[0]]) if near.size else None,
                     "steps": int(steps[-1])})
    return sorted(rows, key=lambda r: (r["problem"], style.rule_order(lane_rule(r["rule"])[0]),
                                       r["rule"], r["beta2"] or 0))


def _name(rule):
    base, values = lane_rule(rule)
    return rule_label(base) + (f" ({values['variant']})" if "variant" in values else "")


def _tables(rows):
    """Markdown: a table per problem, a row per rule, a column per beta2."""
    out = []
    for problem in sorted({r["problem"] for r in rows}):
        mine = [r for r in rows if r["problem"] == problem]
        beta2s = sorted({r["beta2"] for r in mine}, key=lambda b: b or 0)
        heads = [f"β2={b:g}" if b is not None else "x" for b in beta2s]
        out += [f"### {problem} problem: final x (mean over the last "
                f"{LAST_PART:.0%} of the steps; first step with x <= {NEAR_OPTIMUM})", "",
                "| rule | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(heads)]
        cells = {(r["rule"], r["beta2"]): r for r in mine}
        for rule in dict.fromkeys(r["rule"] for r in mine):
            row = [_cell(cells.get((rule, b))) for b in beta2s]
            out.append(f"| {_name(rule)} | " + " | ".join(row) + " |")
        out.append("")
    return out


def _cell(r):
    if r is None:
        return ""
    first = "never" if r["first_near_optimum"] is None else f"{r['first_near_optimum']:,}"
    return f"{r['final_x']:+.3f} ({r['mean_x_last']:+.3f}; {first})"


def write_synthetic_report(results_dir, md_path=None):
    """Write ``report.md`` and ``report.csv`` of the synthetic result in
    ``results_dir`` (or at ``md_path`` and beside it), atomically; returns the paths."""
    md_path = md_path or os.path.join(os.fspath(results_dir), "report.md")
    rows = lane_summary(results_dir)
    name = os.path.basename(os.path.normpath(os.fspath(results_dir)))
    steps = rows[0]["steps"]
    text = [f"# {name}: the synthetic problem, {steps:,} steps", "",
            "Each cell: final x (mean x over the last tenth of the steps; the first recorded "
            f"step with x <= {NEAR_OPTIMUM}, or never). The optimum is x = -1; Adam's "
            "failure ends at +1.", ""] + _tables(rows)
    atomic_write_text(md_path, "\n".join(text))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = os.path.splitext(md_path)[0] + ".csv"
    atomic_write_text(csv_path, buf.getvalue())
    return [md_path, csv_path]
