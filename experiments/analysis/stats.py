"""Statistics of a grid: per-setting summaries and paired Adam-AMSGrad tests.

A *setting* is a run's values on the grid's axes (:func:`~experiments.analysis.records.grid_axes`:
the axes of ``grid.yaml`` and any hyperparameter that varies), so a grid over ``beta1`` or
``epsilon`` keeps those settings apart. Runs that share a seed share initial parameters and
data order, whatever the updater, so Adam and AMSGrad are compared on paired differences
across seeds: per setting, ``d_s = metric(Adam, seed s) - metric(AMSGrad, seed s)``, with a
t interval on the mean of ``d``, a paired t-test (Student 1908) and, where there are at
least 5 pairs, the Wilcoxon signed-rank test. The p-values of the settings are also given
Holm-adjusted (Holm 1979), as a dozen settings are tested at once.

Only completed runs (finished or diverged) enter the statistics; running ones are
counted. Diverged runs enter with the values they ended at.

References
----------
Student (1908). The probable error of a mean. Biometrika 6(1), 1-25.
Holm, S. (1979). A simple sequentially rejective multiple test procedure.
    Scandinavian Journal of Statistics 6(2), 65-70.
"""
import numpy as np

from experiments.analysis.records import (STATS, final_metrics, grid_axes, is_complete,
                                          is_diverged, setting_of)

__all__ = ["ALPHA", "UPDATERS", "setting_axes", "summarize", "best_settings", "holm",
           "paired_test", "compare", "best_vs_best"]

ALPHA = 0.05
UPDATERS = ("adam", "amsgrad")


def _scipy_stats():
    try:
        from scipy import stats
    except ImportError:  # pragma: no cover - scipy is in both environments
        raise ImportError("the report's tests need scipy: pip install scipy") from None
    return stats


def setting_axes(runs):
    """The axes that make a setting of ``runs``, the updater left out (it is compared)."""
    return tuple(a for a in grid_axes(runs) if a != "updater")


def _order(axes):
    """Sort key of a setting: learning rates from large to small, bias correction on
    first, any other value ascending (the post's order)."""
    def key(values):
        return tuple(-v if a == "learning_rate" else (not v) if a == "bias_correction" else v
                     for a, v in zip(axes, values))
    return key


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if values.size else np.nan
    std = float(values.std(ddof=1)) if values.size >= 2 else np.nan
    return mean, std


def summarize(runs, axes=None):
    """One dict per (updater, setting), sorted by updater, then setting.

    Keys: ``updater``, each of ``axes`` (default :func:`setting_axes`), ``n`` (completed
    runs), ``n_diverged``, ``n_running`` (incomplete runs), ``seeds``, and ``<stat>_mean``,
    ``<stat>_std`` (sample std, ddof=1; NaN for n < 2) for each stat of STATS.
    """
    axes = setting_axes(runs) if axes is None else tuple(axes)
    groups = {}
    for run in runs:
        groups.setdefault((run.updater, setting_of(run, axes)), []).append(run)
    order = _order(axes)
    rows = []
    for updater, setting in sorted(groups, key=lambda k: (k[0], order(k[1]))):
        members = groups[updater, setting]
        done = [r for r in members if is_complete(r)]
        row = {"updater": updater, **dict(zip(axes, setting))}
        row.update(n=len(done), n_diverged=sum(is_diverged(r) for r in done),
                   n_running=len(members) - len(done), seeds=sorted(r.seed for r in done))
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


def _select(runs, updater, axes, setting):
    return [r for r in runs if r.updater == updater and setting_of(r, axes) == setting]


def compare(runs, stat="final_val_acc", axes=None):
    """Adam minus AMSGrad on ``stat`` per setting of ``axes`` (default
    :func:`setting_axes`), paired by seed.

    Returns one dict per setting: the setting's value on each axis, ``seeds``, the keys
    of :func:`paired_test`, and ``p_holm`` (Holm-adjusted across the settings).
    """
    axes = setting_axes(runs) if axes is None else tuple(axes)
    rows = []
    for setting in sorted({setting_of(r, axes) for r in runs}, key=_order(axes)):
        seeds, a, b = _pairs(*(_select(runs, u, axes, setting) for u in UPDATERS), stat)
        row = {**dict(zip(axes, setting)), "seeds": seeds}
        row.update(paired_test(a, b))
        rows.append(row)
    for row, p in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = float(p)
    return rows


def best_vs_best(runs, summary, stat="final_val_acc", axes=None):
    """Adam's best setting against AMSGrad's (by mean final val acc), paired by seed."""
    axes = setting_axes(runs) if axes is None else tuple(axes)
    best = best_settings(summary)
    if set(best) != set(UPDATERS):
        return None
    sel = [_select(runs, u, axes, tuple(best[u][a] for a in axes)) for u in UPDATERS]
    seeds, a, b = _pairs(*sel, stat)
    return {"adam": best["adam"], "amsgrad": best["amsgrad"], "seeds": seeds,
            **paired_test(a, b)}
