"""What a panel of a grid figure shows: its axis limits for each view, and the mean of a
group of runs with its band. No drawing of lines here (colours and styles are
:mod:`experiments.analysis.figures`'); these functions only read runs and set limits.

Limits come from the runs that trained: a diverged run (non-finite curves, or stuck at
the clipped loss) is drawn but never sets the scale.
"""
import numpy as np
import scipy.stats

from experiments.analysis.records import is_diverged

__all__ = ["pad", "finite", "limits", "window_values", "trained", "fit_panel", "best_view",
           "mean_band"]


def pad(lo, hi, frac=0.05, min_span=1e-6):
    """``(lo, hi)`` widened by ``frac`` of the span on each side."""
    span = max(hi - lo, min_span * max(1.0, abs(hi)))
    return lo - frac * span, hi + frac * span


def finite(arrays):
    """The finite values of ``arrays``, flat."""
    values = np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.array([])
    return values[np.isfinite(values)]


def limits(values, metric):
    """Padded ``(lo, hi)`` around ``values``, or None if there are none; accuracies
    within [-0.02, 1.02], losses from 0 when none is negative."""
    if values.size == 0:
        return None
    lo, hi = pad(float(values.min()), float(values.max()))
    if metric in ("acc", "val_acc"):
        lo, hi = max(lo, -0.02), min(hi, 1.02)
    elif metric in ("loss", "val_loss"):
        lo = max(lo, 0.0) if values.min() >= 0 else lo
    return lo, hi


def window_values(runs, metric, x0, x1):
    """The finite values of ``metric`` at epochs ``x0`` to ``x1``."""
    return finite([r.curves[metric][(r.epoch >= x0) & (r.epoch <= x1)] for r in runs])


def trained(runs):
    """The runs that did not diverge."""
    return [r for r in runs if not is_diverged(r)]


def fit_panel(runs, metric, x0=None, x1=None):
    """Limits that fit the trained ``runs`` (all of them if every one diverged), at
    epochs ``x0`` to ``x1`` (default: every epoch)."""
    def values(group):
        if x0 is None:
            return finite([r.curves[metric] for r in group])
        return window_values(group, metric, x0, x1)
    return limits(values(trained(runs)), metric) or limits(values(runs), metric)


def best_view(ax, runs, metric, n_epochs):
    """Zoom on the best epochs: every trained run's best value in frame, with as much
    room again beyond it to show how the curves approach and leave it; every line's
    values at the epochs shown that lie on the best side of the worst best value stay
    inside, with a margin (a line that is still improving when training ends is not cut
    at the top or at the last epoch)."""
    maximize = metric.endswith("acc")
    best_x, best_y = [], []
    for r in trained(runs) or runs:
        y = np.where(np.isfinite(r.curves[metric]), r.curves[metric], np.nan)
        if np.all(np.isnan(y)):
            continue
        i = int(np.nanargmax(y) if maximize else np.nanargmin(y))
        best_x.append(r.epoch[i])
        best_y.append(y[i])
    if not best_x:
        return
    w = max(1, round(0.1 * n_epochs))
    x0, x1 = max(1, min(best_x) - w), min(n_epochs, max(best_x) + w)
    # room after the last epoch shown, so a best value there is not on the frame
    ax.set_xlim(x0, x1 + max(0.5, 0.02 * (x1 - x0)))
    lo, hi = min(best_y), max(best_y)
    span = max(hi - lo, 0.01 * max(abs(hi), 1e-3))
    ax.set_ylim((lo - span, hi + 0.15 * span) if maximize else (lo - 0.15 * span, hi + span))


def mean_band(runs, metric, alpha=0.05):
    """The mean of ``metric`` over ``runs`` (seeds) per epoch, and its two-sided
    ``1 - alpha`` t interval: ``(epochs, mean, lo, hi)``.

    At each epoch the runs that reached it with a finite value count (a diverged run's
    NaN does not); the interval is ``mean ± t_{1-alpha/2, n-1} s / sqrt(n)``, NaN where
    fewer than 2 runs count.
    """
    epochs = np.unique(np.concatenate([r.epoch for r in runs])) if runs else np.array([])
    mean, half = np.full(len(epochs), np.nan), np.full(len(epochs), np.nan)
    t = scipy.stats.t
    for i, e in enumerate(epochs):
        y = np.array([r.curves[metric][r.epoch == e][0] for r in runs if np.any(r.epoch == e)])
        y = y[np.isfinite(y)]
        if y.size:
            mean[i] = y.mean()
        if y.size >= 2:
            half[i] = t.ppf(1 - alpha / 2, y.size - 1) * y.std(ddof=1) / np.sqrt(y.size)
    return epochs, mean, mean - half, mean + half
