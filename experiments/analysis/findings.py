"""The key findings of a report, said first: each candidate's best setting against the
baseline's (difference, 95% interval, effect size, p-value), and the setting-by-setting
verdict after Holm's correction with how many settings go each way and by how much.

Works on the result of :func:`experiments.analysis.stats.analyse`; differences there are
baseline - candidate, here turned into "X is better by ..." (accuracy in percentage
points, loss in its own units).
"""
import numpy as np

from experiments.analysis.readable import (estimate, number, p_value, percent, plural,
                                           setting_text)
from experiments.analysis.records import rule_label
from experiments.analysis.stats import ALPHA, COMPARED

__all__ = ["UNITS", "verdict_counts", "verdict_text", "best_text", "key_findings"]

# stat -> (scale, unit) of a difference as the findings say it.
UNITS = {"final_val_acc": (100.0, " points"), "final_val_loss": (1.0, "")}


def verdict_counts(rows, higher_is_better=True, key="p_holm"):
    """Setting-by-setting verdicts of :func:`~experiments.analysis.stats.compare` rows:
    ``{'settings', 'tested', 'baseline_better', 'candidate_better', 'no_difference',
    'identical'}``, the ``*_better`` entries lists of the sizes ``|mean difference|`` of
    the settings where that rule is significantly better (``key`` below :data:`ALPHA`);
    settings that ended identical for every seed count as tested, without a difference."""
    out = {"settings": len(rows), "tested": 0, "baseline_better": [], "candidate_better": [],
           "no_difference": 0, "identical": 0}
    for row in rows:
        if not np.isfinite(row[key]):
            # identical results for every seed: no test, and no difference either
            identical = bool(row["n"] >= 2 and row["sd"] == 0 and row["mean"] == 0)
            for count in ("no_difference", "tested", "identical"):
                out[count] += identical
            continue
        out["tested"] += 1
        if row[key] >= ALPHA:
            out["no_difference"] += 1
        else:
            baseline_wins = (row["mean"] > 0) == higher_is_better
            out["baseline_better" if baseline_wins else "candidate_better"].append(
                abs(float(row["mean"])))
    return out


def _sizes(sizes, scale, unit):
    low, high = min(sizes) * scale, max(sizes) * scale
    if number(low) == number(high):
        return f"by {number(high)}{unit}"
    return f"by {number(low)} to {number(high)}{unit}"


def verdict_text(counts, baseline, candidate, stat, label=rule_label):
    """``AMSGrad is better in 3 of 12 settings after Holm, by 0.1 to 0.3 points; Adam in
    2, by ...; 7 show no significant difference.`` (``label`` names the two: rules by
    default, grids for two grids compared)."""
    scale, unit = UNITS.get(stat, (1.0, ""))
    b, c = label(baseline), label(candidate)
    if not counts["tested"]:
        return (f"none of the {plural(counts['settings'], 'setting')} has 2 or more paired "
                "seeds with a spread yet: nothing could be tested.")
    wins = counts["candidate_better"]
    text = (f"{c} is better in {len(wins)} of {plural(counts['tested'], 'setting')} tested "
            "after Holm" + (f", {_sizes(wins, scale, unit)}" if wins else ""))
    losses = counts["baseline_better"]
    text += f"; {b} in {len(losses)}" + (f", {_sizes(losses, scale, unit)}" if losses else "")
    same, identical = counts["no_difference"], counts.get("identical", 0)
    text += (f"; {same} show{'s' if same == 1 else ''} no significant difference" if same
             else "; no setting is without a significant difference")
    text += (f" ({'all' if identical == same else f'{identical} of them'} identical for every "
             "seed)." if identical else ".")
    untested = counts["settings"] - counts["tested"]
    if untested:
        text += f" {plural(untested, 'setting')} could not be tested (fewer than 2 pairs)."
    return text


def best_text(bvb, baseline, candidate, axes):
    """Best against best in words: the two settings, their mean final accuracies and
    who is higher by how much, with the interval, ``d_z`` and the (optimistic) p-value."""
    b, c = rule_label(baseline), rule_label(candidate)
    rows = bvb["baseline"], bvb["candidate"]
    head = (f"{c} at its best ({setting_text(rows[1], axes)}: "
            f"{percent(rows[1]['final_val_acc_mean'])}) against {b} at its best "
            f"({setting_text(rows[0], axes)}: {percent(rows[0]['final_val_acc_mean'])})")
    if not np.isfinite(bvb["mean"]):
        return head + ": no seed has both yet."
    # stats: baseline - candidate; said the other way round when the candidate is ahead
    sign = -1.0 if bvb["mean"] <= 0 else 1.0
    winner = c if sign < 0 else b
    mean, low, high = estimate(sign * bvb["mean"], tuple(sorted(sign * np.asarray(bvb["ci"]))),
                               scale=100.0)
    if mean == "0":
        return head + f": the same to rounding over {plural(bvb['n'], 'seed')}."
    p = bvb["p"]
    test = ("significant at 5%" if np.isfinite(p) and p < ALPHA else "not significant at 5%"
            if np.isfinite(p) else "no test (fewer than 2 pairs)")
    return (head + f": {winner} higher by {mean} points (95% CI {low} to {high}), "
            f"d_z = {number(sign * bvb['d_z'])}, paired t-test p = {p_value(p)} over "
            f"{plural(bvb['n'], 'seed')}: {test} (optimistic, as both settings were picked "
            "on these runs).")


def key_findings(result):
    """The findings of an :func:`~experiments.analysis.stats.analyse` result: a dict
    ``{candidate: {'best': text or None, 'settings': {stat: {'counts': ..., 'text':
    ...}} or None}}`` (None where the candidate is compared best against best only)."""
    baseline, axes, out = result["baseline"], result["axes"], {}
    for c in result["candidates"]:
        bvb = result["best_vs_best"][c]
        entry = {"best": best_text(bvb, baseline, c, axes) if bvb else None, "settings": None}
        if result["setting"][c] is not None:
            entry["settings"] = {}
            for stat, _, higher in COMPARED:
                counts = verdict_counts(result["setting"][c][stat], higher)
                entry["settings"][stat] = {"counts": counts,
                                           "text": verdict_text(counts, baseline, c, stat)}
        out[c] = entry
    return out
