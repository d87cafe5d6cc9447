"""The report of a grid: per-setting summaries and paired comparisons of rules, as
Markdown (``report.md``), CSV (``report.csv``, one row per test) and JSON (``report.json``,
everything).

The statistics are those of :func:`experiments.analysis.stats.analyse`, computed once;
this module lays them out. A setting's columns are the grid's axes (learning rate, beta2
and bias correction for the post's grids; beta1, variant or any other where a grid varies
them). Differences are baseline minus candidate (the post's: Adam − AMSGrad).
"""
import csv
import io
import json
import os

import numpy as np
import yaml

from experiments.analysis.figures import figure_names
from experiments.analysis.records import STATS, ResultsError, rule_label
from experiments.analysis.stats import ALPHA, COMPARED, analyse
from experiments.config import check_analysis
from experiments.results.files import atomic_write_text
from experiments.results.store import GRID_FILE

__all__ = ["render_report", "report_csv", "report_json", "write_report", "report_paths",
           "read_analysis"]

# How an axis is named in a setting's text and in a table's header (else its key).
_NAMES = {"learning_rate": "lr", "beta1": "β1", "beta2": "β2", "epsilon": "ε",
          "bias_correction": "bias correction", "weight_decay": "weight decay"}
_HEADERS = {**_NAMES, "bias_correction": "bias corr."}


# Markdown -------------------------------------------------------------------------------

def _num(x, digits=4):
    return "n/a" if not np.isfinite(x) else f"{x:.{digits}f}"


def _diff(x):
    return "n/a" if not np.isfinite(x) else f"{x:.3g}"


def _p(p):
    return "n/a" if not np.isfinite(p) else f"{p:.3g}"


def _dz(x):
    return "n/a" if not np.isfinite(x) else f"{x:.2f}"


def _mean_std_cell(row, name):
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    return "n/a" if not np.isfinite(mean) else f"{_num(mean)} ± {_num(std)}"


def _cell(value):
    if value is None:
        return "–"  # the rule does not take this hyperparameter
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _setting(row, axes):
    """``lr=0.001, β2=0.999, bias correction on``: a row's setting in words (the axes
    its rule takes)."""
    return ", ".join(f"{_NAMES.get(a, a)} {_cell(row[a])}" if isinstance(row[a], bool)
                     else f"{_NAMES.get(a, a)}={_cell(row[a])}" for a in axes
                     if row[a] is not None)


def _better(res, higher_is_better, pair=("adam", "amsgrad")):
    return rule_label(pair[0] if (res["mean"] > 0) == higher_is_better else pair[1])


def _verdict(res, key="p", higher_is_better=True, pair=("adam", "amsgrad")):
    if res["n"] >= 2 and res["sd"] == 0 and res["mean"] == 0:
        return "no: identical"
    if not np.isfinite(res[key]):
        return "n/a"
    if res[key] >= ALPHA:
        return "no"
    return f"yes: {_better(res, higher_is_better, pair)} better"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _vs(pair, sep=" − "):
    return sep.join(rule_label(u) for u in pair)


def _comparison_section(rows, axes, label, higher_is_better=True, pair=("adam", "amsgrad")):
    a, b = (rule_label(u) for u in pair)
    lines = [f"### {label}: {_vs(pair)}", ""]
    lines += _table(
        [_HEADERS.get(x, x) for x in axes]
        + ["pairs", "mean diff.", "95% CI", "t", "p", "p (Holm)", "p (Wilcoxon)",
           "significant at 5%", "after Holm", "d_z"],
        [[_cell(r[x]) for x in axes] + [
          r["n"], _diff(r["mean"]), f"[{_diff(r['ci'][0])}, {_diff(r['ci'][1])}]",
          _num(r["t"], 3), _p(r["p"]), _p(r["p_holm"]), _p(r["p_wilcoxon"]),
          _verdict(r, "p", higher_is_better, pair),
          _verdict(r, "p_holm", higher_is_better, pair), _dz(r["d_z"])]
         for r in rows])
    tested = [r for r in rows if np.isfinite(r["p"])]
    identical = [r for r in rows if _verdict(r) == "no: identical"]
    raw = [r for r in tested if r["p"] < ALPHA]
    adj = [r for r in tested if r["p_holm"] < ALPHA]
    lines.append("")
    same = (f" In {len(identical)} settings {a} and {b} ended identical for every "
            "seed." if identical else "")
    if not tested:
        lines.append(f"Overall: no setting has 2 or more paired seeds with a spread of "
                     f"differences yet, so nothing can be tested for {label.lower()}." + same)
        return lines

    def names(rs):
        return "; ".join(f"{_setting(r, axes)} "
                         f"({_better(r, higher_is_better, pair)} better)" for r in rs)

    lines.append(f"Overall: of {len(tested)} settings tested, {len(raw)} show a difference "
                 f"in {label.lower()} significant at 5% before correction"
                 + (f" ({names(raw)})" if raw else "")
                 + f", and {len(adj)} after Holm correction across the {len(tested)} tests"
                 + (f" ({names(adj)})." if adj else ".") + same)
    lines.append("")
    if adj:
        lines.append(f"**Conclusion: {a} and {b} differ significantly in {label.lower()} "
                     f"in {len(adj)} of {len(tested)} settings after Holm correction.**")
    else:
        lines.append(f"**Conclusion: no significant difference between {a} and {b} in "
                     f"{label.lower()} once the multiple comparisons are accounted for.**")
    return lines


def _best_section(result, axes):
    baseline, lines = result["baseline"], []
    for u in [baseline, *result["candidates"]]:
        if u in result["best"]:
            b = result["best"][u]
            lines.append(f"- {u}: {_setting(b, axes)}: "
                         f"final val acc {_mean_std_cell(b, 'final_val_acc')} (n={b['n']})")
        else:
            lines.append(f"- {u}: no completed runs")
    for c in result["candidates"]:
        bvb = result["best_vs_best"][c]
        if bvb is None:
            continue
        lines += ["", f"Best against best, final validation accuracy paired by seed "
                  f"({bvb['n']} pairs): {_vs((baseline, c))} = {_diff(bvb['mean'])}, 95% CI "
                  f"[{_diff(bvb['ci'][0])}, {_diff(bvb['ci'][1])}], paired t-test "
                  f"p = {_p(bvb['p'])}: "
                  + ("significant at 5%." if np.isfinite(bvb["p"]) and bvb["p"] < ALPHA
                     else "not significant at 5%." if np.isfinite(bvb["p"]) else "n/a.")
                  + " The two settings were picked on these same runs, so this p-value "
                  f"is optimistic. Effect size d_z = {_dz(bvb['d_z'])}."]
    apart = [c for c in result["candidates"] if result["setting"][c] is None]
    if apart:
        lines += ["", ", ".join(rule_label(c) for c in apart)
                  + f" {'does' if len(apart) == 1 else 'do'} not take every hyperparameter "
                  f"{rule_label(baseline)} takes, so {'it is' if len(apart) == 1 else 'they are'}"
                  " compared best against best only."]
    return lines


def _paired_intro(n_max, several, pair):
    return ["Runs with the same seed share initial parameters and data order, so each "
            "setting is compared on the per-seed differences "
            + ("baseline − candidate" if several else _vs(pair))
            + ": mean, 95% t interval, paired t-test (two-sided). 'p (Holm)' adjusts the "
            "p-values for testing all settings at once (Holm's step-down method). The "
            "Wilcoxon signed-rank test needs no normality but, with n pairs, its p-value "
            f"cannot go below 2/2^n ({_p(2 / 2 ** max(n_max, 1))} for n={n_max}); it is given "
            "for n ≥ 5. 'd_z' is the effect size: the mean difference over the standard "
            "deviation of the differences (Cohen's d for paired samples)."
            + (" Each comparison's settings are Holm-adjusted apart." if several else ""), ""]


def render_report(runs, report_path, figures_dir=None, title=None, baseline=None,
                  candidates=None, result=None):
    """The Markdown report of one grid's ``runs``; figures linked relative to the report.

    ``baseline`` and ``candidates`` name the comparison (default
    :func:`~experiments.analysis.stats.choose_comparison`); ``result``, the output of
    :func:`~experiments.analysis.stats.analyse` if already computed.
    """
    result = result or analyse(runs, baseline, candidates)
    axes, summary, baseline = result["axes"], result["summary"], result["baseline"]
    states = [r.state or "unknown" for r in runs]
    config = runs[0].config if runs else {}
    pairs = [(baseline, c) for c in result["candidates"]]
    lines = [f"# {title or ' vs '.join(rule_label(u) for u in [baseline, *result['candidates']])}",
             ""]
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
        ["updater"] + [_HEADERS.get(a, a) for a in axes]
        + ["n", "diverged", "running", "final val acc", "best val acc", "final val loss",
           "best val loss", "final train loss"],
        [[r["updater"]] + [_cell(r[a]) for a in axes] + [r["n"], r["n_diverged"], r["n_running"]]
         + [_mean_std_cell(r, name) for name in STATS] for r in summary])
    lines += ["", "## Best setting per optimizer", "",
              "By mean final validation accuracy.", ""]
    lines += _best_section(result, axes)
    n_max = max((len(r["seeds"]) for r in summary), default=0)
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


# CSV and JSON ---------------------------------------------------------------------------

_TEST_KEYS = ("n", "mean", "sd", "d_z", "t", "p", "p_holm", "p_wilcoxon")


def _plain(value):
    """JSON-able: NaN -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _tests(result):
    """Every test of the report, one dict each (the CSV's rows): the keys of
    :func:`~experiments.analysis.stats.paired_test`, and the settings compared as
    mappings of the axes (None where the rule does not take the axis)."""
    axes, baseline, out = result["axes"], result["baseline"], []

    def setting(row, updater):
        return {a: row[a] if _takes(result, updater, a) else None for a in axes}

    for c in result["candidates"]:
        for stat, _, _ in COMPARED:
            for row in result["setting"][c][stat] if result["setting"][c] else ():
                out.append({**row, "comparison": "setting", "stat": stat, "baseline": baseline,
                            "candidate": c, "setting": setting(row, c),
                            "baseline_setting": setting(row, baseline)})
        bvb = result["best_vs_best"][c]
        if bvb is not None:
            out.append({**bvb, "comparison": "best", "stat": "final_val_acc", "p_holm": np.nan,
                        "baseline": baseline, "candidate": c,
                        "setting": setting(bvb["candidate"], c),
                        "baseline_setting": setting(bvb["baseline"], baseline)})
    return out


def _takes(result, updater, axis):
    return any(r[axis] is not None for r in result["summary"] if r["updater"] == updater)


def report_csv(result):
    """``report.csv``: one row per test (setting by setting, and best against best).

    Columns: ``comparison`` (``setting`` | ``best``), ``stat``, ``baseline``,
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

    def cell(v):
        v = _plain(v)
        return "" if v is None else repr(v) if isinstance(v, float) else v

    for t in _tests(result):
        writer.writerow([t["comparison"], t["stat"], t["baseline"], t["candidate"]]
                        + [cell(t["setting"][a]) for a in axes]
                        + [cell(t["baseline_setting"][a]) for a in axes]
                        + [" ".join(str(s) for s in t["seeds"]), t["n"], cell(t["mean"]),
                           cell(t["ci"][0]), cell(t["ci"][1])]
                        + [cell(t[k]) for k in ("sd", "d_z", "t", "p", "p_holm", "p_wilcoxon")])
    return buf.getvalue()


def report_json(result, title=None):
    """``report.json``: the comparison, the per-setting summary, each rule's best
    setting and every test (the CSV's rows, settings as mappings); NaN as null."""
    keys = ("comparison", "stat", "baseline", "candidate", "setting", "baseline_setting",
            "seeds", "ci") + _TEST_KEYS
    data = {"title": title, "baseline": result["baseline"], "candidates": result["candidates"],
            "axes": list(result["axes"]), "alpha": ALPHA, "summary": result["summary"],
            "best": {u: {a: r[a] for a in result["axes"]} for u, r in result["best"].items()},
            "tests": [{k: t[k] for k in keys} for t in _tests(result)]}
    return json.dumps(_plain(data), indent=1, allow_nan=False) + "\n"


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
    stem = os.path.splitext(report_path)[0]
    paths = (report_path, f"{stem}.csv", f"{stem}.json")
    atomic_write_text(paths[1], report_csv(result))
    atomic_write_text(paths[2], report_json(result, title))
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
