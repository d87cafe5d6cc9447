"""What ``run_grid.py`` says once a grid's runs are through: each rule's best setting
(the mean and standard deviation over seeds of the final validation accuracy) and the
commands that write the report and draw the figures, with where they go::

    best setting of each rule (final val_acc, mean ± sd over seeds):
      adam_lr=0.001_b2=0.999_bc=on     93.05% ± 0.04  (5 seeds)
      amsgrad_lr=0.001_b2=0.99_bc=off  93.13% ± 0.03  (5 seeds)
    report:  python scripts/report.py results/logreg  (report.md, .csv, .json in that folder)
    figures: python scripts/plot.py results/logreg    (PNG and PDF in its figures/)

A setting is named as its run folders are, without the seed. The best setting is the
report's (:func:`experiments.analysis.stats.best_settings`); the report says whether it is
better than the others.
"""
import os
import shlex

from experiments.analysis import records, stats
from experiments.analysis.progress import setting_label
from experiments.analysis.readable import fixed, percent
from experiments.config.runs import run_id

__all__ = ["epilogue"]


def _best_rows(runs, plus_minus):
    """``[(setting, 'mean ± sd', 'n seeds')]`` of each rule's best setting."""
    axes = stats.setting_axes(runs)
    rows = []
    for updater, row in stats.best_settings(stats.summarize(runs, axes)).items():
        named = {a: row[a] for a in axes if row.get(a) is not None}
        setting = setting_label(run_id({"updater": updater, **named, "seed": 0},
                                       ("updater", *named)))
        spread = fixed(100 * row["final_val_acc_std"], 2)
        value = percent(row["final_val_acc_mean"]) + \
            (f" {plus_minus} {spread}" if spread != "n/a" else "")
        rows.append((setting, value, f"({row['n']} seed{'s' if row['n'] != 1 else ''})"))
    return rows


def epilogue(grid_dir, report="python scripts/report.py", plot="python scripts/plot.py",
             encoding=None):
    """The lines of the module docstring for the grid in ``grid_dir``; ``report`` and
    ``plot``: the commands as the user calls them (``amsgrad-report`` once installed);
    ``encoding``: the output's (``±`` where it can be written, else ``+-``). No lines
    when no run of the grid is done."""
    try:
        runs = records.find_runs(grid_dir)
    except records.ResultsError:
        return []
    try:
        "±".encode(encoding or "utf-8")
        plus_minus = "±"
    except (UnicodeEncodeError, LookupError):
        plus_minus = "+-"
    rows = _best_rows(runs, plus_minus)
    if not rows:
        return []
    width = [max(len(r[k]) for r in rows) for k in range(2)]
    lines = [f"best setting of each rule (final val_acc, mean {plus_minus} sd over seeds):"]
    lines += [f"  {s:<{width[0]}}  {v:<{width[1]}}  {n}" for s, v, n in rows]
    where = shlex.quote(os.fspath(grid_dir))
    report_cmd, plot_cmd = f"{report} {where}", f"{plot} {where}"
    pad = max(len(report_cmd), len(plot_cmd))
    lines += [f"report:  {report_cmd:<{pad}}  (report.md, .csv, .json in that folder)",
              f"figures: {plot_cmd:<{pad}}  (PNG and PDF in its figures/)"]
    return lines
