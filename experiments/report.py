"""The Markdown report of a grid: per-setting summaries and paired Adam-AMSGrad tests.

Runs that share a seed share initial parameters and data order, whatever the updater,
so Adam and AMSGrad are compared on paired differences across seeds: per (lr, beta2,
bias correction) setting, ``d_s = metric(Adam, seed s) - metric(AMSGrad, seed s)``,
with a t interval on the mean of ``d``, a paired t-test (Student 1908) and, where there
are at least 5 pairs, the Wilcoxon signed-rank test. The p-values of the settings are
also given Holm-adjusted (Holm 1979), as a dozen settings are tested at once.

Only completed runs (finished or diverged) enter the statistics; running ones are
counted. Diverged runs enter with the values they ended at.

References
----------
Student (1908). The probable error of a mean. Biometrika 6(1), 1-25.
Holm, S. (1979). A simple sequentially rejective multiple test procedure.
    Scandinavian Journal of Statistics 6(2), 65-70.
"""
import os

import numpy as np

from experiments.plots import figure_names, is_diverged
from experiments.results import atomic_write_text

__all__ = ["STATS", "final_metrics", "is_complete", "summarize", "best_settings",
           "holm", "paired_test", "compare", "best_vs_best", "render_report", "write_report"]

ALPHA = 0.05
# Per-run statistics: name -> (metric, 'final' | 'max' | 'min').
STATS = {"final_val_acc": ("val_acc", "final"), "best_val_acc": ("val_acc", "max"),
         "final_val_loss": ("val_loss", "final"), "best_val_loss": ("val_loss", "min"),
         "final_loss": ("loss", "final")}
UPDATERS = ("adam", "amsgrad")


def _scipy_stats():
    try:
        from scipy import stats
    except ImportError:  # pragma: no cover - scipy is in both environments
        raise ImportError("the report's tests need scipy: pip install scipy") from None
    return stats


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


def is_complete(run):
    """Finished or diverged; runs without a state count if all planned epochs are there."""
    if run.state in ("finished", "diverged"):
        return True
    return run.state is None and run.epochs > 0 and len(run.epoch) >= run.epochs


def _key(run):
    return (run.updater, run.lr, run.beta2, run.bias_correction)


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if values.size else np.nan
    std = float(values.std(ddof=1)) if values.size >= 2 else np.nan
    return mean, std


def summarize(runs):
    """One dict per (updater, lr, beta2, bias_correction) setting, sorted.

    Keys: ``updater``, ``lr``, ``beta2``, ``bias_correction``, ``n`` (completed runs),
    ``n_diverged``, ``n_running`` (incomplete runs), ``seeds``, and ``<stat>_mean``,
    ``<stat>_std`` (sample std, ddof=1; NaN for n < 2) for each stat of STATS.
    """
    groups = {}
    for run in runs:
        groups.setdefault(_key(run), []).append(run)
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], -k[1], k[2], not k[3])):
        done = [r for r in groups[key] if is_complete(r)]
        row = dict(zip(("updater", "lr", "beta2", "bias_correction"), key))
        row.update(n=len(done), n_diverged=sum(is_diverged(r) for r in done),
                   n_running=len(groups[key]) - len(done),
                   seeds=sorted(r.seed for r in done))
        per_run = [final_metrics(r) for r in done]
        for name in STATS:
            row[f"{name}_mean"], row[f"{name}_std"] = _mean_std([m[name] for m in per_run])
        rows.append(row)
    return rows


def best_settings(summary, stat="final_val_acc"):
    """``{updater: row}``: each updater's setting with the highest mean ``stat``."""
    best = {}
    for row in summary:
        value = row[f"{stat}_mean"]
        if row["n"] and np.isfinite(value):
            current = best.get(row["updater"])
            if current is None or value > current[f"{stat}_mean"]:
                best[row["updater"]] = row
    return best


def holm(pvalues):
    """Holm-adjusted p-values (NaN entries stay NaN and do not count as tests)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    m, running = len(order), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def paired_test(a, b, alpha=ALPHA):
    """Paired comparison of ``a`` and ``b`` (aligned by seed): statistics of ``a - b``.

    Returns a dict: ``n``, ``mean`` (mean difference), ``sd``, ``ci`` (two-sided
    ``1 - alpha`` t interval of the mean), ``t``, ``p`` (paired t-test, two-sided),
    ``p_wilcoxon`` (signed-rank, two-sided; only for n >= 5). NaN where undefined
    (n < 2; zero spread).
    """
    stats = _scipy_stats()
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    n = len(d)
    out = {"n": n, "mean": float(d.mean()) if n else np.nan, "sd": np.nan,
           "ci": (np.nan, np.nan), "t": np.nan, "p": np.nan, "p_wilcoxon": np.nan}
    if n < 2 or not np.all(np.isfinite(d)):
        return out
    sd = float(d.std(ddof=1))
    half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / np.sqrt(n)
    out.update(sd=sd, ci=(out["mean"] - half, out["mean"] + half))
    if sd > 0:
        res = stats.ttest_rel(a, b)
        out.update(t=float(res.statistic), p=float(res.pvalue))
        if n >= 5 and np.any(d != 0):
            out["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue)
    return out


def _pairs(runs_a, runs_b, stat):
    a = {r.seed: final_metrics(r)[stat] for r in runs_a if is_complete(r)}
    b = {r.seed: final_metrics(r)[stat] for r in runs_b if is_complete(r)}
    seeds = sorted(set(a) & set(b))
    return seeds, [a[s] for s in seeds], [b[s] for s in seeds]


def compare(runs, stat="final_val_acc"):
    """Adam minus AMSGrad on ``stat`` per (lr, beta2, bias_correction), paired by seed.

    Returns one dict per setting: ``lr``, ``beta2``, ``bias_correction``, ``seeds``,
    the keys of :func:`paired_test`, and ``p_holm`` (Holm-adjusted across the settings).
    """
    settings = sorted({_key(r)[1:] for r in runs}, key=lambda k: (-k[0], k[1], not k[2]))
    rows = []
    for lr, beta2, bc in settings:
        by = {u: [r for r in runs if _key(r) == (u, lr, beta2, bc)] for u in UPDATERS}
        seeds, a, b = _pairs(by["adam"], by["amsgrad"], stat)
        row = {"lr": lr, "beta2": beta2, "bias_correction": bc, "seeds": seeds}
        row.update(paired_test(a, b))
        rows.append(row)
    for row, p in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = float(p)
    return rows


def best_vs_best(runs, summary, stat="final_val_acc"):
    """Adam's best setting against AMSGrad's (by mean final val acc), paired by seed."""
    best = best_settings(summary)
    if set(best) != set(UPDATERS):
        return None
    sel = {u: [r for r in runs if _key(r) == tuple(best[u][k] for k in
                                                   ("updater", "lr", "beta2", "bias_correction"))]
           for u in UPDATERS}
    seeds, a, b = _pairs(sel["adam"], sel["amsgrad"], stat)
    return {"adam": best["adam"], "amsgrad": best["amsgrad"], "seeds": seeds,
            **paired_test(a, b)}


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


def _setting(lr, beta2, bc):
    return f"lr={lr:g}, β2={beta2:g}, bias correction {'on' if bc else 'off'}"


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


def _comparison_section(rows, label, higher_is_better=True):
    lines = [f"### {label}: Adam − AMSGrad", ""]
    lines += _table(
        ["lr", "β2", "bias corr.", "pairs", "mean diff.", "95% CI", "t", "p", "p (Holm)",
         "p (Wilcoxon)", "significant at 5%", "after Holm"],
        [[f"{r['lr']:g}", f"{r['beta2']:g}", "on" if r["bias_correction"] else "off",
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
        return "; ".join(f"{_setting(r['lr'], r['beta2'], r['bias_correction'])} "
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
    summary = summarize(runs)
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
        ["updater", "lr", "β2", "bias corr.", "n", "diverged", "running", "final val acc",
         "best val acc", "final val loss", "best val loss", "final train loss"],
        [[r["updater"], f"{r['lr']:g}", f"{r['beta2']:g}",
          "on" if r["bias_correction"] else "off", r["n"], r["n_diverged"], r["n_running"]]
         + [_mean_std_cell(r, name) for name in STATS] for r in summary])
    lines += ["", "## Best setting per optimizer", "",
              "By mean final validation accuracy.", ""]
    best = best_settings(summary)
    for u in UPDATERS:
        if u in best:
            b = best[u]
            lines.append(f"- {u}: {_setting(b['lr'], b['beta2'], b['bias_correction'])}: "
                         f"final val acc {_mean_std_cell(b, 'final_val_acc')} (n={b['n']})")
        else:
            lines.append(f"- {u}: no completed runs")
    bvb = best_vs_best(runs, summary)
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
        lines += _comparison_section(compare(runs, stat), label, higher_is_better) + [""]
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
