"""The report of two grids compared (:func:`experiments.analysis.grids.compare_grids`):
Markdown, CSV (one row per test) and JSON, the key findings first -- what differs
between the grids (config, code, libraries), how many settings they share and how they
were compared, and the verdicts with their sizes.

Differences are first grid minus second; accuracies in percent, their differences in
percentage points.
"""
import csv
import io
import json
import os

from experiments.analysis.findings import verdict_text
from experiments.analysis.progress import progress_lines
from experiments.analysis.provenance import provenance_lines
from experiments.analysis.readable import AXIS_NAMES, cell, estimate, fixed, p_value, plural
from experiments.analysis.records import rule_label
from experiments.analysis.report import table
from experiments.analysis.report_tables import plain
from experiments.analysis.stats import COMPARED
from experiments.results.files import atomic_write_text

__all__ = ["render_grid_comparison", "grid_comparison_csv", "grid_comparison_json",
           "write_grid_comparison", "comparison_paths"]

_HEADERS = {**AXIS_NAMES, "bias_correction": "bias corr."}


def _name(result, which):
    return f"`{result['names'][which]}`"


def _differences(result):
    """What differs between the grids, as list items."""
    a, b = result["names"]
    lines = [f"  - {key}: {', '.join(va) or '(not set)'} → {', '.join(vb) or '(not set)'}"
             for key, va, vb in result["differences"]]
    lines += [f"  - {what}: {'; '.join(va) or '(no record)'} → {'; '.join(vb) or '(no record)'}"
              for what, va, vb in result["changes"]]
    if not lines:
        return [f"- `{a}` and `{b}` have the same config and provenance (apart from names)."]
    return [f"- What differs, `{a}` → `{b}`:"] + lines


def _how(result):
    """How many settings are shared, and how they were compared."""
    rows = result["tests"][COMPARED[0][0]]
    welch = sum(r["test"] == "welch" for r in rows)
    text = (f"- {plural(result['shared'], 'setting')} in common (of "
            f"{result['settings_a']} in {_name(result, 0)} and {result['settings_b']} in "
            f"{_name(result, 1)}), compared on final values")
    if not rows:
        return [text + "."]
    if welch == 0:
        return [text + ", paired by seed (the same seeds in both grids)."]
    if welch == len(rows):
        return [text + ", unpaired (Welch's t-test: the grids have fewer than 2 seeds in "
                "common)."]
    return [text + f"; {welch} of them unpaired (Welch's t-test: fewer than 2 seeds in "
            f"common), the other {len(rows) - welch} paired by seed."]


def _findings(result):
    names = result["names"]
    lines = ["## Key findings", ""]
    for which in (0, 1):
        first = progress_lines(result["progress"][which])
        lines += [f"{_name(result, which)}: {first[0]}"] + first[1:] + [""]
    lines += _differences(result) + _how(result)
    for stat, label, _ in COMPARED:
        text = verdict_text(result["verdicts"][stat], names[0], names[1], stat,
                            label=lambda n: f"`{n}`")
        lines.append(f"- **{label}, setting by setting:** {text}")
    return lines


def _row_cells(r, axes, stat):
    points = stat.endswith("acc")
    scale = 100.0 if points else 1.0
    mean, low, high = estimate(r["mean"], r["ci"], scale)
    shown = (lambda v: fixed(100 * v, 2)) if points else (lambda v: fixed(v, 4))
    runs = f"{r['n_a']}" if r["test"] == "paired" else f"{r['n_a']} / {r['n_b']}"
    identical = r["test"] == "paired" and r["n"] >= 2 and r["sd"] == 0 and r["mean"] == 0
    p = ["identical"] * 2 if identical else [p_value(r["p"]), p_value(r["p_holm"])]
    return ([rule_label(r["updater"])] + [cell(r[a]) for a in axes]
            + [r["test"], runs, shown(r["mean_a"]), shown(r["mean_b"]), mean, f"[{low}, {high}]",
               *p, f"{r['effect_name']} = {fixed(r['effect'], 2)}"])


def _tables(result):
    axes = [a for a in result["axes"] if a != "updater"]
    a, b = result["names"]
    lines = ["## Settings compared", "",
             f"Per setting, {'`' + a + '`'} − {'`' + b + '`'} on the runs' final values: "
             "'paired' over the seeds both grids ran (mean of the per-seed differences, "
             "t interval, paired t-test, effect size d_z), 'welch' where they share fewer "
             "than 2 seeds (difference of the means, Welch's t interval and test, Cohen's d "
             "with the pooled standard deviation). 'p (Holm)' adjusts for the settings "
             "tested at once.", ""]
    for stat, label, _ in COMPARED:
        unit = " (%)" if stat.endswith("acc") else ""
        lines += [f"### {label}", ""]
        lines += table(["rule"] + [_HEADERS.get(x, x) for x in axes]
                       + ["test", "runs", f"{a}{unit}", f"{b}{unit}",
                          "diff." + (" (points)" if unit else ""), "95% CI", "p",
                          "p (Holm)", "effect"],
                       [_row_cells(r, axes, stat) for r in result["tests"][stat]])
        lines.append("")
    return lines


def render_grid_comparison(result, title=None):
    """The Markdown report of :func:`~experiments.analysis.grids.compare_grids`'s result."""
    a, b = result["names"]
    lines = [f"# {title or f'{a} vs {b}'}", ""] + _findings(result) + [""] + _tables(result)
    for which in (0, 1):
        lines += [f"## Provenance of {_name(result, which)}", ""]
        lines += provenance_lines(result["provenance"][which]) + [""]
    return "\n".join(lines).rstrip() + "\n"


_TEST_KEYS = ("test", "n_a", "n_b", "mean_a", "mean_b", "mean", "ci", "t", "p", "p_holm",
              "effect_name", "effect")


def grid_comparison_csv(result):
    """One row per statistic and shared setting: ``stat``, the setting (``updater`` and
    each axis), ``test`` (``paired`` | ``welch``), ``seeds`` (paired ones,
    space-separated), ``n_a``, ``n_b``, ``mean_a``, ``mean_b``, ``mean`` (first −
    second), ``ci_low``, ``ci_high``, ``t``, ``p``, ``p_holm``, ``effect_name``
    (``d_z`` | ``d``), ``effect``. Empty cells: undefined, or an axis the rule does not
    take."""
    axes = list(result["axes"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["stat", *axes, "test", "seeds", "n_a", "n_b", "mean_a", "mean_b", "mean",
                     "ci_low", "ci_high", "t", "p", "p_holm", "effect_name", "effect"])

    def out(v):
        v = plain(v)
        return "" if v is None else repr(v) if isinstance(v, float) else v

    for stat, _, _ in COMPARED:
        for r in result["tests"][stat]:
            writer.writerow([stat] + [out(r[a]) for a in axes]
                            + [r["test"], " ".join(map(str, r["seeds"])), r["n_a"], r["n_b"]]
                            + [out(r[k]) for k in ("mean_a", "mean_b", "mean")]
                            + [out(r["ci"][0]), out(r["ci"][1])]
                            + [out(r[k]) for k in ("t", "p", "p_holm", "effect_name", "effect")])
    return buf.getvalue()


def grid_comparison_json(result, title=None):
    """Everything, the findings first: ``findings`` (texts and verdict counts),
    ``differences``, ``changes``, ``shared``, then ``progress``, ``provenance`` and
    every test (settings as mappings); NaN as null."""
    names = result["names"]
    texts = [verdict_text(result["verdicts"][s], names[0], names[1], s, label=str)
             for s, _, _ in COMPARED]
    data = {"title": title, "grids": list(names),
            "findings": {"text": texts, "verdicts": result["verdicts"]},
            "differences": [{"key": k, "a": va, "b": vb} for k, va, vb in result["differences"]],
            "changes": [{"what": w, "a": va, "b": vb} for w, va, vb in result["changes"]],
            "shared": result["shared"], "settings_a": result["settings_a"],
            "settings_b": result["settings_b"], "axes": list(result["axes"]),
            "progress": list(result["progress"]), "provenance": list(result["provenance"]),
            "tests": {stat: [{"setting": {a: r[a] for a in result["axes"]}, "seeds": r["seeds"],
                              **{k: r[k] for k in _TEST_KEYS}} for r in rows]
                      for stat, rows in result["tests"].items()}}
    return json.dumps(plain(data), indent=1, allow_nan=False) + "\n"


def comparison_paths(out, names):
    """``(md, csv, json)``: ``out`` a ``.md`` file (CSV and JSON beside it), or a folder
    holding ``vs_<second grid>.md`` and the rest."""
    md = out if out.endswith(".md") else os.path.join(out, f"vs_{names[1].replace('/', '_')}.md")
    stem = md[:-len(".md")]
    return md, f"{stem}.csv", f"{stem}.json"


def write_grid_comparison(result, report_path, title=None):
    """Write the Markdown report to ``report_path`` and the CSV and JSON next to it
    (same stem), each atomically; returns the three paths."""
    stem = os.path.splitext(report_path)[0]
    paths = (report_path, f"{stem}.csv", f"{stem}.json")
    atomic_write_text(paths[1], grid_comparison_csv(result))
    atomic_write_text(paths[2], grid_comparison_json(result, title))
    atomic_write_text(paths[0], render_grid_comparison(result, title))
    return paths
