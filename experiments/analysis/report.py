"""The report of a grid as Markdown (``report.md``), with ``report.csv`` (one row per
test) and ``report.json`` (everything) next to it (:mod:`.report_tables`).

The statistics are those of :func:`experiments.analysis.stats.analyse`, computed once;
this module lays them out, the key findings first (:mod:`.findings`; an unfinished grid
says so before anything else, :mod:`.progress`), then the tables, the provenance of the
runs (:mod:`.provenance`) and the figures. A setting's columns are the grid's axes.
Differences are baseline minus candidate (the post's: Adam − AMSGrad); accuracies read in
percent, their differences in percentage points, and every number is rounded to what it
can say (:mod:`.readable`).
"""
import os

import numpy as np
import yaml

from experiments.analysis.figures import figure_names
from experiments.analysis.findings import key_findings
from experiments.analysis.progress import grid_progress, progress_lines
from experiments.analysis.provenance import provenance, provenance_lines
from experiments.analysis.readable import (AXIS_NAMES, cell, estimate, fixed, number,
                                           p_value, plural, setting_text)
from experiments.analysis.records import STATS, ResultsError, rule_label
from experiments.analysis.report_tables import report_csv, report_json
from experiments.analysis.stats import ALPHA, COMPARED, analyse
from experiments.config import check_analysis
from experiments.results.files import atomic_write_text
from experiments.results.store import GRID_FILE

__all__ = ["render_report", "report_csv", "report_json", "write_report", "report_paths",
           "read_analysis", "table"]

_HEADERS = {**AXIS_NAMES, "bias_correction": "bias corr."}
_setting = setting_text  # the name the sections below use


def _mean_std_cell(row, name):
    """Mean ± std of a per-setting statistic: accuracies in percent, losses as they are."""
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    if not np.isfinite(mean):
        return "n/a"
    if name.endswith("acc"):
        return f"{fixed(100 * mean, 2)} ± {fixed(100 * std, 2)}"
    return f"{fixed(mean, 4)} ± {fixed(std, 4)}"


def _better(res, higher_is_better, pair=("adam", "amsgrad")):
    return rule_label(pair[0] if (res["mean"] > 0) == higher_is_better else pair[1])


def _identical(res):
    return res["n"] >= 2 and res["sd"] == 0 and res["mean"] == 0


def _verdict(res, key="p", higher_is_better=True, pair=("adam", "amsgrad")):
    if _identical(res):
        return "no: identical"
    if not np.isfinite(res[key]):
        return "n/a"
    if res[key] >= ALPHA:
        return "no"
    return f"yes: {_better(res, higher_is_better, pair)} better"


def table(header, rows):
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _vs(pair, sep=" − "):
    return sep.join(rule_label(u) for u in pair)


def _test_cells(r, scale):
    """pairs, mean diff., 95% CI, t, p, p (Holm), p (Wilcoxon) of one test row."""
    mean, low, high = estimate(r["mean"], r["ci"], scale)
    return [r["n"], mean, f"[{low}, {high}]", fixed(r["t"], 2), p_value(r["p"]),
            p_value(r["p_holm"]), p_value(r["p_wilcoxon"])]


def _overall(rows, axes, label, higher_is_better, pair):
    """The closing sentences of a comparison table: how many settings differ."""
    a, b = (rule_label(u) for u in pair)
    tested = [r for r in rows if np.isfinite(r["p"])]
    identical = [r for r in rows if _identical(r)]
    same = (f" In {plural(len(identical), 'setting')} {a} and {b} ended identical for "
            "every seed." if identical else "")
    if not tested:
        return [f"Overall: no setting has 2 or more paired seeds with a spread of "
                f"differences yet, so nothing can be tested for {label.lower()}." + same]
    raw = [r for r in tested if r["p"] < ALPHA]
    adj = [r for r in tested if r["p_holm"] < ALPHA]

    def names(rs):
        return "; ".join(f"{_setting(r, axes)} "
                         f"({_better(r, higher_is_better, pair)} better)" for r in rs)

    lines = [f"Overall: of {plural(len(tested), 'setting')} tested, {len(raw)} show a "
             f"difference in {label.lower()} significant at 5% before correction"
             + (f" ({names(raw)})" if raw else "")
             + f", and {len(adj)} after Holm correction across the "
             f"{plural(len(tested), 'test')}" + (f" ({names(adj)})." if adj else ".") + same, ""]
    if adj:
        lines.append(f"**Conclusion: {a} and {b} differ significantly in {label.lower()} "
                     f"in {len(adj)} of {plural(len(tested), 'setting')} after Holm "
                     "correction.**")
    else:
        lines.append(f"**Conclusion: no significant difference between {a} and {b} in "
                     f"{label.lower()} once the multiple comparisons are accounted for.**")
    return lines


def _comparison_section(rows, axes, label, higher_is_better=True, pair=("adam", "amsgrad")):
    """One statistic's setting-by-setting table, and what it comes to."""
    points = label.lower().endswith("accuracy")
    lines = [f"### {label}: {_vs(pair)}", ""]
    lines += table(
        [_HEADERS.get(x, x) for x in axes]
        + ["pairs", "mean diff." + (" (points)" if points else ""), "95% CI", "t", "p",
           "p (Holm)", "p (Wilcoxon)", "significant at 5%", "after Holm", "d_z"],
        [[cell(r[x]) for x in axes] + _test_cells(r, 100.0 if points else 1.0)
         + [_verdict(r, "p", higher_is_better, pair),
            _verdict(r, "p_holm", higher_is_better, pair), fixed(r["d_z"], 2)]
         for r in rows])
    return lines + [""] + _overall(rows, axes, label, higher_is_better, pair)


def _best_section(result, axes):
    """Each rule's best setting; which candidates are compared best against best only."""
    baseline, lines = result["baseline"], []
    for u in [baseline, *result["candidates"]]:
        if u in result["best"]:
            b = result["best"][u]
            lines.append(f"- {u}: {_setting(b, axes)}: final val acc "
                         f"{_mean_std_cell(b, 'final_val_acc')}% (n={b['n']})")
        else:
            lines.append(f"- {u}: no completed runs")
    apart = [c for c in result["candidates"] if result["setting"][c] is None]
    if apart:
        lines += ["", ", ".join(rule_label(c) for c in apart)
                  + f" {'does' if len(apart) == 1 else 'do'} not take every hyperparameter "
                  f"{rule_label(baseline)} takes, so {'it is' if len(apart) == 1 else 'they are'}"
                  " compared best against best only (in the key findings)."]
    return lines


def _paired_intro(n_max, several, pair):
    return ["Runs with the same seed share initial parameters and data order, so each "
            "setting is compared on the per-seed differences "
            + ("baseline − candidate" if several else _vs(pair))
            + " (accuracies in percentage points): mean, 95% t interval, paired t-test "
            "(two-sided). 'p (Holm)' adjusts the p-values for testing all settings at once "
            "(Holm's step-down method). The Wilcoxon signed-rank test needs no normality "
            f"but, with n pairs, its p-value cannot go below 2/2^n "
            f"({number(2 / 2 ** max(n_max, 1))} for n={n_max}); it is given for n ≥ 5. "
            "'d_z' is the effect size: the mean difference over the standard deviation of "
            "the differences (Cohen's d for paired samples)."
            + (" Each comparison's settings are Holm-adjusted apart." if several else ""), ""]


def _findings_section(result, findings, progress):
    lines = ["## Key findings", ""] + progress_lines(progress) + [""]
    for c in result["candidates"]:
        entry, pair = findings[c], _vs((result["baseline"], c), " vs ")
        if entry["best"]:
            lines.append(f"- **{pair}, best against best** (final validation accuracy): "
                         f"{entry['best']}")
        for stat, label, _ in COMPARED if entry["settings"] else ():
            lines.append(f"- **{pair}, {label.lower()}, setting by setting:** "
                         f"{entry['settings'][stat]['text']}")
    return lines


def _summary_section(summary, axes):
    lines = ["## Per setting", "",
             "Mean ± standard deviation (ddof 1) over the completed runs (seeds), accuracies "
             "in percent; 'final' is the last epoch, 'best' the best epoch. Diverged runs "
             "count with the values they ended at; 'n/a' where a run ended on a non-finite "
             "value, or for the std of fewer than 2 runs.", ""]
    return lines + table(
        ["updater"] + [_HEADERS.get(a, a) for a in axes]
        + ["n", "diverged", "running", "final val acc (%)", "best val acc (%)",
           "final val loss", "best val loss", "final train loss"],
        [[r["updater"]] + [cell(r[a]) for a in axes] + [r["n"], r["n_diverged"],
                                                         r["n_running"]]
         + [_mean_std_cell(r, name) for name in STATS] for r in summary])


def _figures_section(report_path, figures_dir):
    lines = ["## Figures", ""]
    pngs = [(m, v, os.path.join(figures_dir, stem + ".png")) for m, v, stem in figure_names()] \
        if figures_dir else []
    pngs = [(m, v, p) for m, v, p in pngs if os.path.isfile(p)]
    if not pngs:
        lines.append("No figures yet: run `python scripts/plot.py` on this results folder.")
    base = os.path.dirname(os.path.abspath(report_path))
    for metric, view, png in pngs:
        rel = os.path.relpath(os.path.abspath(png), base).replace(os.sep, "/")
        lines += [f"![{metric} ({view})]({rel})", ""]
    return lines


def _model_line(runs):
    config = runs[0].config if runs else {}
    if not config.get("model"):
        return []
    epochs = config.get("epochs")
    return [f"Model `{config['model']}` on `{config.get('dataset', '?')}`, "
            + (plural(int(epochs), "epoch") if isinstance(epochs, int) else "? epochs")
            + f", batch size {config.get('batch_size', '?')}.", ""]


def render_report(runs, report_path, figures_dir=None, title=None, baseline=None,
                  candidates=None, result=None):
    """The Markdown report of one grid's ``runs``; figures linked relative to the report.

    ``baseline`` and ``candidates`` name the comparison (default
    :func:`~experiments.analysis.stats.choose_comparison`); ``result``, the output of
    :func:`~experiments.analysis.stats.analyse` if already computed.
    """
    result = result or analyse(runs, baseline, candidates)
    axes, baseline = result["axes"], result["baseline"]
    pairs = [(baseline, c) for c in result["candidates"]]
    lines = [f"# {title or ' vs '.join(rule_label(u) for u in [baseline, *result['candidates']])}",
             ""] + _model_line(runs)
    lines += _findings_section(result, key_findings(result), grid_progress(runs)) + [""]
    lines += _summary_section(result["summary"], axes)
    lines += ["", "## Best setting per optimizer", "", "By mean final validation accuracy.", ""]
    lines += _best_section(result, axes)
    n_max = max((len(r["seeds"]) for r in result["summary"]), default=0)
    for pair in pairs:
        rows = result["setting"][pair[1]]
        if rows is None:
            continue
        cand_axes = tuple(a for a in axes if any(r[a] is not None for r in rows[COMPARED[0][0]]))
        lines += ["", f"## {_vs(pair, ' vs ')}, paired by seed", ""]
        lines += _paired_intro(n_max, len(pairs) > 1, pair)
        for stat, label, higher_is_better in COMPARED:
            lines += _comparison_section(rows[stat], cand_axes, label, higher_is_better,
                                         pair) + [""]
    lines += ["", "## Provenance", "", "What made the runs, from each run's status.json (the "
              "training that wrote it last).", ""] + provenance_lines(provenance(runs)) + [""]
    lines += _figures_section(report_path, figures_dir)
    return "\n".join(lines).rstrip() + "\n"


def report_paths(out):
    """``(md, csv, json)`` for ``--out``: a ``.md`` file (the CSV and JSON next to it,
    the same stem), or a folder (``report.md``, ``report.csv``, ``report.json`` in it)."""
    md = out if out.endswith(".md") else os.path.join(out, "report.md")
    stem = md[:-len(".md")]
    return md, f"{stem}.csv", f"{stem}.json"


def write_report(runs, report_path, figures_dir=None, title=None, baseline=None,
                 candidates=None):
    """Write ``report.md``, and ``report.csv`` and ``report.json`` next to it (same
    stem), each atomically; returns the three paths."""
    result = analyse(runs, baseline, candidates)
    findings = key_findings(result)
    stem = os.path.splitext(report_path)[0]
    paths = (report_path, f"{stem}.csv", f"{stem}.json")
    atomic_write_text(paths[1], report_csv(result))
    atomic_write_text(paths[2], report_json(result, title, findings, grid_progress(runs),
                                            provenance(runs)))
    atomic_write_text(paths[0], render_report(runs, report_path, figures_dir, title,
                                              result=result))
    return paths


def read_analysis(runs, config_path=None):
    """The comparison a config names (its ``analysis:`` mapping, see
    :func:`experiments.config.check_analysis`): ``{'baseline': ..., 'candidates': [...]}``,
    possibly empty, checked against the rules of ``runs``.

    ``config_path`` None: the config the grid's ``grid.yaml`` names, if that file is
    there (a grid run from another folder, or a config since moved: no comparison).
    Raises :class:`ResultsError` naming the file for a mapping that is wrong.
    """
    if config_path is None:
        grid_yaml = os.path.join(os.path.dirname(runs[0].path), GRID_FILE) if runs else ""
        try:
            with open(grid_yaml, encoding="utf-8") as f:
                config_path = (yaml.safe_load(f) or {}).get("config")
        except (OSError, yaml.YAMLError, AttributeError):
            return {}
        if not isinstance(config_path, str) or not os.path.isfile(config_path):
            return {}
    try:
        with open(config_path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ResultsError(f"{config_path}: cannot read: {' '.join(str(e).split())}") from None
    value = data.get("analysis") if isinstance(data, dict) else None
    try:
        return check_analysis(value, sorted({r.updater for r in runs}))
    except ValueError as e:
        key, message = e.args
        raise ResultsError(f"{config_path}: key {key!r}: {message}") from None
