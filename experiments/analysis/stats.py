"""Statistics of a grid: per-setting summaries and paired comparisons of rules.

A *setting* is a run's values on the grid's axes (:func:`~experiments.analysis.records.grid_axes`:
the axes of ``grid.yaml`` and any hyperparameter that varies), so a grid over ``beta1`` or
``variant`` keeps those settings apart. A comparison names a *baseline* rule and
*candidates* (:func:`choose_comparison`; the post's is Adam against AMSGrad). Runs that
share a seed share initial parameters and data order, whatever the rule, so rules are
compared on paired differences across seeds, ``d_s = metric(baseline, seed s) -
metric(candidate, seed s)``, with a t interval on the mean of ``d``, a paired t-test
(Student 1908), the paired effect size ``d_z`` (Cohen 1988) and, where there are at least
5 pairs, the Wilcoxon signed-rank test:

- setting by setting (:func:`compare`), where the candidate takes every hyperparameter the
  baseline takes (the Adam family), the p-values Holm-adjusted (Holm 1979) across the
  settings of that comparison, as a dozen settings are tested at once;
- best against best (:func:`best_vs_best`), for every candidate: each rule's setting with
  the highest mean final validation accuracy. The settings are picked on the same runs
  that are then compared, so its p-value is optimistic.

Only completed runs (finished or diverged) enter the statistics; running ones are
counted. Diverged runs enter with the values they ended at.

References
----------
Student (1908). The probable error of a mean. Biometrika 6(1), 1-25.
Welch, B. L. (1947). The generalization of 'Student's' problem when several different
    population variances are involved. Biometrika 34(1-2), 28-35.
Holm, S. (1979). A simple sequentially rejective multiple test procedure.
    Scandinavian Journal of Statistics 6(2), 65-70.
Cohen, J. (1988). Statistical Power Analysis for the Behavioral Sciences, 2nd ed.,
    section 2.3.5 (d for paired observations). Lawrence Erlbaum.
"""
import numpy as np

from experiments.analysis.records import (STATS, final_metrics, grid_axes, is_complete,
                                          is_diverged, setting_of)

__all__ = ["ALPHA", "UPDATERS", "setting_axes", "summarize", "best_settings", "holm",
           "effect_size", "paired_test", "welch_test", "choose_comparison", "rule_axes",
           "shares_axes", "compare", "best_vs_best", "analyse"]

ALPHA = 0.05
UPDATERS = ("adam", "amsgrad")  # the post's comparison: baseline, candidate


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
    first, any other value ascending (the post's order); a key the rule does not
    take (None) last."""
    def one(a, v):
        if v is None:
            return (1,)
        return (0, -v if a == "learning_rate" else (not v) if a == "bias_correction" else v)

    def key(values):
        return tuple(one(a, v) for a, v in zip(axes, values))
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


def effect_size(d):
    """Cohen's ``d_z`` of paired differences ``d``: their mean over their sample
    standard deviation,

    .. math:: d_z = \\bar d / s_d, \\qquad s_d^2 = \\sum_s (d_s - \\bar d)^2 / (n - 1),

    which is also ``t / sqrt(n)`` of the paired t-test. Unlike the p-value it does not
    grow with the number of seeds: it says how large the difference is against the
    seed-to-seed spread of the differences (Cohen's rough marks: 0.2 small, 0.5
    medium, 0.8 large). NaN for fewer than 2 differences or no spread.
    """
    d = np.asarray(d, dtype=float)
    if d.size < 2 or not np.all(np.isfinite(d)):
        return np.nan
    sd = float(d.std(ddof=1))
    return float(d.mean()) / sd if sd > 0 else np.nan


def paired_test(a, b, alpha=ALPHA):
    """Paired comparison of ``a`` and ``b`` (aligned by seed): statistics of ``a - b``.

    Returns a dict: ``n``, ``mean`` (mean difference), ``sd``, ``ci`` (two-sided
    ``1 - alpha`` t interval of the mean), ``t``, ``p`` (paired t-test, two-sided),
    ``d_z`` (:func:`effect_size`), ``p_wilcoxon`` (signed-rank, two-sided; only for
    n >= 5). NaN where undefined (n < 2; zero spread).
    """
    stats = _scipy_stats()
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    n = len(d)
    out = {"n": n, "mean": float(d.mean()) if n else np.nan, "sd": np.nan,
           "ci": (np.nan, np.nan), "t": np.nan, "p": np.nan, "d_z": np.nan,
           "p_wilcoxon": np.nan}
    if n < 2 or not np.all(np.isfinite(d)):
        return out
    sd = float(d.std(ddof=1))
    half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / np.sqrt(n)
    out.update(sd=sd, ci=(out["mean"] - half, out["mean"] + half), d_z=effect_size(d))
    if sd > 0:
        res = stats.ttest_rel(a, b)
        out.update(t=float(res.statistic), p=float(res.pvalue))
        if n >= 5 and np.any(d != 0):
            out["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue)
    return out


def welch_test(a, b, alpha=ALPHA):
    """Unpaired comparison of ``a`` and ``b`` (runs that share no seed): statistics of
    ``mean(a) - mean(b)`` without assuming equal variances (Welch 1947).

    Returns a dict: ``n_a``, ``n_b``, ``mean``, ``ci`` (two-sided ``1 - alpha`` t interval
    with the Welch-Satterthwaite degrees of freedom ``df``), ``t``, ``p`` (Welch's
    t-test, two-sided), ``d`` (Cohen's d: the difference over the pooled standard
    deviation). NaN where undefined (fewer than 2 values on a side; no spread).
    """
    stats = _scipy_stats()
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    mean = float(a.mean() - b.mean()) if a.size and b.size else np.nan
    out = {"n_a": int(a.size), "n_b": int(b.size), "mean": mean, "ci": (np.nan, np.nan),
           "df": np.nan, "t": np.nan, "p": np.nan, "d": np.nan}
    if a.size < 2 or b.size < 2 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return out
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0:
        return out
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = stats.t.ppf(1 - alpha / 2, df) * np.sqrt(va + vb)
    res = stats.ttest_ind(a, b, equal_var=False)
    pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1))
                     / (a.size + b.size - 2))
    out.update(ci=(mean - half, mean + half), df=float(df), t=float(res.statistic),
               p=float(res.pvalue), d=mean / pooled if pooled > 0 else np.nan)
    return out


def _pairs(runs_a, runs_b, stat):
    a = {r.seed: final_metrics(r)[stat] for r in runs_a if is_complete(r)}
    b = {r.seed: final_metrics(r)[stat] for r in runs_b if is_complete(r)}
    seeds = sorted(set(a) & set(b))
    return seeds, [a[s] for s in seeds], [b[s] for s in seeds]


def _select(runs, updater, axes, setting):
    return [r for r in runs if r.updater == updater and setting_of(r, axes) == setting]


def choose_comparison(updaters, baseline=None, candidates=None):
    """``(baseline, candidates)`` among the rules ``updaters`` of a grid.

    By default Adam against AMSGrad (then any other rule) when the grid has both,
    as in the post; otherwise the first rule (alphabetically) against the others.
    Raises ValueError naming a rule that is not in the grid, or a baseline that is
    also a candidate.
    """
    updaters = sorted(set(updaters))

    def known(name):
        if name not in updaters:
            raise ValueError(f"{name!r} is not a rule of this grid "
                             f"({', '.join(updaters) or 'no runs'})")
        return name

    if baseline is None:  # alphabetically first: Adam wherever it is in the grid
        free = [u for u in updaters if u not in (candidates or ())]
        baseline = free[0] if free else None
    else:
        known(baseline)
    if candidates is None:
        candidates = sorted((u for u in updaters if u != baseline),
                            key=lambda u: (u != "amsgrad", u))
    candidates = [known(c) for c in dict.fromkeys(candidates)]
    if baseline in candidates:
        raise ValueError(f"{baseline!r} is the baseline; it cannot also be a candidate")
    return baseline, candidates


def rule_axes(runs, updater, axes):
    """The axes among ``axes`` that ``updater`` takes (its runs have a value there)."""
    return tuple(a for a in axes
                 if any(r.hparams.get(a) is not None for r in runs if r.updater == updater))


def shares_axes(runs, baseline, candidate, axes):
    """True if ``candidate`` takes every axis the baseline takes (the Adam family):
    then each of its settings has a baseline setting to be paired with."""
    return set(rule_axes(runs, baseline, axes)) <= set(rule_axes(runs, candidate, axes))


def compare(runs, stat="final_val_acc", axes=None, baseline=UPDATERS[0],
            candidate=UPDATERS[1]):
    """``baseline`` minus ``candidate`` on ``stat`` per setting of ``axes`` (default
    :func:`setting_axes`), paired by seed.

    Each of the candidate's settings is paired with the baseline's setting of the
    same values on the baseline's axes (an axis only the candidate takes, such as
    AdamW's weight decay, gives rows of its own). With the same axes, a setting that
    only one of the two has run yet gets a row too (with no pairs). Returns one dict
    per setting: its value on each axis (None where the candidate does not take it),
    ``seeds``, the keys of :func:`paired_test`, and ``p_holm`` (Holm-adjusted across
    the settings). Raises ValueError if the candidate lacks an axis of the baseline.
    """
    axes = setting_axes(runs) if axes is None else tuple(axes)
    if not shares_axes(runs, baseline, candidate, axes):
        raise ValueError(f"{candidate!r} does not take every hyperparameter of {baseline!r}; "
                         "compare them best against best")
    base_axes = rule_axes(runs, baseline, axes)
    settings = {setting_of(r, axes) for r in runs if r.updater == candidate}
    if set(base_axes) == set(rule_axes(runs, candidate, axes)):
        settings |= {setting_of(r, axes) for r in runs if r.updater == baseline}
    rows = []
    for setting in sorted(settings, key=_order(axes)):
        base = tuple(v if a in base_axes else None for a, v in zip(axes, setting))
        seeds, a, b = _pairs(_select(runs, baseline, axes, base),
                             _select(runs, candidate, axes, setting), stat)
        row = {**dict(zip(axes, setting)), "seeds": seeds}
        row.update(paired_test(a, b))
        rows.append(row)
    for row, p in zip(rows, holm([r["p"] for r in rows])):
        row["p_holm"] = float(p)
    return rows


def best_vs_best(runs, summary, stat="final_val_acc", axes=None, baseline=UPDATERS[0],
                 candidate=UPDATERS[1]):
    """The baseline's best setting against the candidate's (by mean final validation
    accuracy, :func:`best_settings`), ``stat`` paired by seed.

    Returns None if either has no completed runs, else a dict: ``baseline`` and
    ``candidate`` (their rows of ``summary``), ``seeds`` and the keys of
    :func:`paired_test`. The settings were picked on these same runs: the p-value is
    optimistic.
    """
    axes = setting_axes(runs) if axes is None else tuple(axes)
    best = best_settings(summary)
    if baseline not in best or candidate not in best:
        return None
    sel = [_select(runs, u, axes, tuple(best[u][a] for a in axes)) for u in (baseline, candidate)]
    seeds, a, b = _pairs(*sel, stat)
    return {"baseline": best[baseline], "candidate": best[candidate], "seeds": seeds,
            **paired_test(a, b)}


# The report's statistics: (stat, label, higher is better).
COMPARED = (("final_val_acc", "Final validation accuracy", True),
            ("final_val_loss", "Final validation loss", False))


def analyse(runs, baseline=None, candidates=None):
    """Everything the report shows, computed once (the Markdown, CSV and JSON forms
    lay it out): a dict with ``axes``, ``baseline``, ``candidates``, ``summary``,
    ``best`` (:func:`best_settings`), and per candidate ``setting`` (``{stat: rows of
    compare}``, or None where it does not share the baseline's axes) and
    ``best_vs_best`` (the result of :func:`best_vs_best` on final validation accuracy,
    or None)."""
    axes = setting_axes(runs)
    baseline, candidates = choose_comparison({r.updater for r in runs}, baseline, candidates)
    summary = summarize(runs, axes)
    out = {"axes": axes, "baseline": baseline, "candidates": candidates, "summary": summary,
           "best": best_settings(summary), "setting": {}, "best_vs_best": {}}
    for c in candidates:
        pair = dict(axes=axes, baseline=baseline, candidate=c)
        out["setting"][c] = {stat: compare(runs, stat, **pair) for stat, _, _ in COMPARED} \
            if shares_axes(runs, baseline, c, axes) else None
        out["best_vs_best"][c] = best_vs_best(runs, summary, **pair)
    return out
