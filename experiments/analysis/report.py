"""The Markdown report of a grid: per-setting summaries and paired Adam-AMSGrad tests.

The statistics are those of :mod:`experiments.analysis.stats`; this module lays them
out. A setting's columns are the grid's axes (learning rate, beta2 and bias correction
for the post's grids; beta1 or epsilon too where a grid varies them).
"""
import os

import numpy as np

from experiments.analysis.figures import figure_names
from experiments.analysis.records import STATS
from experiments.analysis.stats import (ALPHA, UPDATERS, best_settings, best_vs_best, compare,
                                        setting_axes, summarize)
from experiments.results.files import atomic_write_text

__all__ = ["render_report", "write_report"]

# How an axis is named in a setting's text and in a table's header.
_NAMES = {"learning_rate": "lr", "beta1": "β1", "beta2": "β2", "epsilon": "ε",
          "bias_correction": "bias correction"}
_HEADERS = {**_NAMES, "bias_correction": "bias corr."}


# Markdown -------------------------------------------------------------------------------

def _num(x, digits=4):
    return "n/a" if not np.isfinite(x) else f"{x:.{digits}f}"


def _diff(x):
    return "n/a" if not np.isfinite(x) else f"{x:.3g}"


def _p(p):
    return "n/a" if not np.isfinite(p) else f"{p:.3g}"


def _mean_std_cell(row, name):
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    return "n/a" if not np.isfinite(mean) else f"{_num(mean)} ± {_num(std)}"


def _cell(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _setting(row, axes):
    """``lr=0.001, β2=0.999, bias correction on``: a row's setting in words."""
    return ", ".join(f"{_NAMES[a]} {_cell(row[a])}" if isinstance(row[a], bool)
                     else f"{_NAMES[a]}={_cell(row[a])}" for a in axes)


def _better(res, higher_is_better):
    return "Adam" if (res["mean"] > 0) == higher_is_better else "AMSGrad"


def _verdict(res, key="p", higher_is_better=True):
    if res["n"] >= 2 and res["sd"] == 0 and res["mean"] == 0:
        return "no: identical"
    if not np.isfinite(res[key]):
        return "n/a"
    if res[key] >= ALPHA:
        return "no"
    return f"yes: {_better(res, higher_is_better)} better"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _comparison_section(rows, axes, label, higher_is_better=True):
    lines = [f"### {label}: Adam − AMSGrad", ""]
    lines += _table(
        [_HEADERS[a] for a in axes] + ["pairs", "mean diff.", "95% CI", "t", "p", "p (Holm)",
         "p (Wilcoxon)", "significant at 5%", "after Holm"],
        [[_cell(r[a]) for a in axes] + [
          r["n"], _diff(r["mean"]), f"[{_diff(r['ci'][0])}, {_diff(r['ci'][1])}]",
          _num(r["t"], 3), _p(r["p"]), _p(r["p_holm"]), _p(r["p_wilcoxon"]),
          _verdict(r, "p", higher_is_better), _verdict(r, "p_holm", higher_is_better)]
         for r in rows])
    tested = [r for r in rows if np.isfinite(r["p"])]
    identical = [r for r in rows if _verdict(r) == "no: identical"]
    raw = [r for r in tested if r["p"] < ALPHA]
    adj = [r for r in tested if r["p_holm"] < ALPHA]
    lines.append("")
    same = (f" In {len(identical)} settings Adam and AMSGrad ended identical for every "
            "seed." if identical else "")
    if not tested:
        lines.append(f"Overall: no setting has 2 or more paired seeds with a spread of "
                     f"differences yet, so nothing can be tested for {label.lower()}." + same)
        return lines

    def names(rs):
        return "; ".join(f"{_setting(r, axes)} "
                         f"({_better(r, higher_is_better)} better)" for r in rs)

    lines.append(f"Overall: of {len(tested)} settings tested, {len(raw)} show a difference "
                 f"in {label.lower()} significant at 5% before correction"
                 + (f" ({names(raw)})" if raw else "")
                 + f", and {len(adj)} after Holm correction across the {len(tested)} tests"
                 + (f" ({names(adj)})." if adj else ".") + same)
    lines.append("")
    if adj:
        lines.append(f"**Conclusion: Adam and AMSGrad differ significantly in {label.lower()} "
                     f"in {len(adj)} of {len(tested)} settings after Holm correction.**")
    else:
        lines.append(f"**Conclusion: no significant difference between Adam and AMSGrad in "
                     f"{label.lower()} once the multiple comparisons are accounted for.**")
    return lines


def render_report(runs, report_path, figures_dir=None, title=None):
    """The Markdown report of one grid's ``runs``; figures linked relative to the report."""
    axes = setting_axes(runs)
    summary = summarize(runs, axes)
    states = [r.state or "unknown" for r in runs]
    config = runs[0].config if runs else {}
    lines = [f"# {title or 'Adam vs AMSGrad'}", ""]
    if config.get("model"):
        lines += [f"Model `{config['model']}` on `{config.get('dataset', '?')}`, "
                  f"{config.get('epochs', '?')} epochs, batch size "
                  f"{config.get('batch_size', '?')}.", ""]
    lines += [f"{len(runs)} runs: " + ", ".join(f"{states.count(s)} {s}" for s in
                                                 sorted(set(states))) + ".", ""]
    lines += ["## Per setting", "",
              "Mean ± standard deviation (ddof 1) over the completed runs (seeds); "
              "'final' is the last epoch, 'best' the best epoch. Diverged runs count with "
              "the values they ended at; 'n/a' where a run ended on a non-finite value, "
              "or for the std of fewer than 2 runs.", ""]
    lines += _table(
        ["updater"] + [_HEADERS[a] for a in axes]
        + ["n", "diverged", "running", "final val acc", "best val acc", "final val loss",
           "best val loss", "final train loss"],
        [[r["updater"]] + [_cell(r[a]) for a in axes] + [r["n"], r["n_diverged"], r["n_running"]]
         + [_mean_std_cell(r, name) for name in STATS] for r in summary])
    lines += ["", "## Best setting per optimizer", "",
              "By mean final validation accuracy.", ""]
    best = best_settings(summary)
    for u in UPDATERS:
        if u in best:
            b = best[u]
            lines.append(f"- {u}: {_setting(b, axes)}: "
                         f"final val acc {_mean_std_cell(b, 'final_val_acc')} (n={b['n']})")
        else:
            lines.append(f"- {u}: no completed runs")
    bvb = best_vs_best(runs, summary, axes=axes)
    if bvb is not None:
        lines += ["", f"Best against best, final validation accuracy paired by seed "
                  f"({bvb['n']} pairs): Adam − AMSGrad = {_diff(bvb['mean'])}, 95% CI "
                  f"[{_diff(bvb['ci'][0])}, {_diff(bvb['ci'][1])}], paired t-test "
                  f"p = {_p(bvb['p'])}: "
                  + ("significant at 5%." if np.isfinite(bvb["p"]) and bvb["p"] < ALPHA
                     else "not significant at 5%." if np.isfinite(bvb["p"]) else "n/a.")
                  + " The two settings were picked on these same runs, so this p-value "
                  "is optimistic."]
    n_max = max((len(r["seeds"]) for r in summary), default=0)
    lines += ["", "## Adam vs AMSGrad, paired by seed", "",
              "Runs with the same seed share initial parameters and data order, so each "
              "setting is compared on the per-seed differences Adam − AMSGrad: mean, 95% "
              "t interval, paired t-test (two-sided). 'p (Holm)' adjusts the p-values for "
              "testing all settings at once (Holm's step-down method). The Wilcoxon "
              "signed-rank test needs no normality but, with n pairs, its p-value cannot "
              f"go below 2/2^n ({_p(2 / 2 ** max(n_max, 1))} for n={n_max}); it is given "
              "for n ≥ 5.", ""]
    for stat, label, higher_is_better in (("final_val_acc", "Final validation accuracy", True),
                                          ("final_val_loss", "Final validation loss", False)):
        lines += _comparison_section(compare(runs, stat, axes), axes, label,
                                      higher_is_better) + [""]
    lines += ["## Figures", ""]
    pngs = [(m, v, os.path.join(figures_dir, stem + ".png")) for m, v, stem in figure_names()] \
        if figures_dir else []
    pngs = [(m, v, p) for m, v, p in pngs if os.path.isfile(p)]
    if not pngs:
        lines.append("No figures yet: run `python scripts/plot.py` on this results folder.")
    base = os.path.dirname(os.path.abspath(report_path))
    for metric, view, png in pngs:
        rel = os.path.relpath(os.path.abspath(png), base).replace(os.sep, "/")
        lines += [f"![{metric} ({view})]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(runs, report_path, figures_dir=None, title=None):
    """Render and write the report atomically; returns its path."""
    atomic_write_text(report_path, render_report(runs, report_path, figures_dir, title))
    return report_path
