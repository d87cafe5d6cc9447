"""The post's figures: learning curves of a grid, and the synthetic trajectories.

For each metric (training loss, validation loss, training accuracy, validation
accuracy) one figure with a panel per (learning rate, beta2) setting -- rows learning
rate, columns beta2 (a rule without beta2 in a column of its own) -- and one line per
run: Adam blue, AMSGrad red, other rules in colours of their own, lighter shades with
bias correction off. Besides the full curves there are zoomed views: the last epochs
(``last``; the post zooms into the final epochs of training loss) and, for the
validation metrics, the region around the best epochs (``best``); and ``mean``: per
rule and setting, the mean over seeds with its 95% t interval as a band (other axes of
the grid, such as beta1 or variant, drawn in line styles of their own).

Diverged runs (non-finite curves, or stuck at the clipped loss of 14.5) are drawn,
but never set an axis' limits: the limits come from the runs that trained.

Every figure is written as PNG and PDF, atomically, with the Agg backend.
"""
import io
import math
import os

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from experiments.analysis.records import (METRICS, ResultsError, grid_axes,  # noqa: E402
                                          is_diverged, rule_label)
from experiments.results.files import atomic_write_bytes  # noqa: E402
from experiments.results.trajectories import TRAJECTORIES_FILE, read_trajectories  # noqa: E402

__all__ = ["VIEWS", "COLORS", "color", "mean_band", "plot_metric", "figure_names", "plot_grid",
           "save_figure", "read_synthetic", "plot_synthetic", "save_synthetic", "synthetic_dirs"]

LABELS = {"loss": "training loss", "val_loss": "validation loss",
          "acc": "training accuracy", "val_acc": "validation accuracy"}
# Views per metric: the full curves, the last epochs, the region of the best epochs.
# Views per metric: the full curves, the last epochs, the region of the best epochs,
# the mean over seeds with its band.
VIEWS = {"loss": ("full", "last", "mean"), "acc": ("full", "last", "mean"),
         "val_loss": ("full", "last", "best", "mean"),
         "val_acc": ("full", "last", "best", "mean")}
LAST_FRACTION = 0.2  # the 'last' view shows the last 20% of the epochs
COLORS = {("adam", True): "#1f4fbf", ("adam", False): "#92b1ee",
          ("amsgrad", True): "#d0231f", ("amsgrad", False): "#f3a29f"}
# Other rules (bias correction on or not taken, off): tab10's green, purple, orange, grey.
_MORE = {"adamw": ("#2ca02c", "#98df8a"), "momentum": ("#9467bd", "#c5b0d5"),
         "nesterov_momentum": ("#ff7f0e", "#ffbb78"), "sgd": ("#7f7f7f", "#c7c7c7")}
_SPARE = (("#17becf", "#9edae5"), ("#8c564b", "#c49c94"), ("#e377c2", "#f7b6d2"),
          ("#bcbd22", "#dbdb8d"))
_STYLES = ("-", "--", ":", "-.")


def _pad(lo, hi, frac=0.05, min_span=1e-6):
    span = max(hi - lo, min_span * max(1.0, abs(hi)))
    return lo - frac * span, hi + frac * span


def _finite(arrays):
    values = np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.array([])
    return values[np.isfinite(values)]


def _limits(values, metric):
    """Padded (lo, hi) around ``values``, or None if there are none."""
    if values.size == 0:
        return None
    lo, hi = _pad(float(values.min()), float(values.max()))
    if metric in ("acc", "val_acc"):
        lo, hi = max(lo, -0.02), min(hi, 1.02)
    elif metric in ("loss", "val_loss"):
        lo = max(lo, 0.0) if values.min() >= 0 else lo
    return lo, hi


def _window_values(runs, metric, x0, x1):
    return _finite([r.curves[metric][(r.epoch >= x0) & (r.epoch <= x1)] for r in runs])


def _good(runs):
    return [r for r in runs if not is_diverged(r)]


def _best_view(ax, runs, metric, n_epochs):
    """Zoom on the best epochs: every trained run's best value in frame, with as much
    room again beyond it to show how the curves approach and leave it."""
    maximize = metric.endswith("acc")
    best_x, best_y = [], []
    for r in _good(runs) or runs:
        y = np.where(np.isfinite(r.curves[metric]), r.curves[metric], np.nan)
        if np.all(np.isnan(y)):
            continue
        i = int(np.nanargmax(y) if maximize else np.nanargmin(y))
        best_x.append(r.epoch[i])
        best_y.append(y[i])
    if not best_x:
        return
    w = max(1, round(0.1 * n_epochs))
    ax.set_xlim(max(1, min(best_x) - w), min(n_epochs, max(best_x) + w) + 1e-9)
    lo, hi = min(best_y), max(best_y)
    span = max(hi - lo, 0.01 * max(abs(hi), 1e-3))
    ax.set_ylim((lo - span, hi + 0.1 * span) if maximize else (lo - 0.1 * span, hi + span))


def color(updater, bias_correction=True):
    """A rule's colour; the lighter shade with bias correction off."""
    if (updater, bias_correction) in COLORS:
        return COLORS[updater, bias_correction]
    pair = _MORE.get(updater) or _SPARE[sum(map(ord, updater)) % len(_SPARE)]
    return pair[bias_correction is False]


def _order_key(value):
    return (value is None, 0.0 if value is None else value)


def _legend_handles(runs):
    """One entry per (rule, bias correction) among ``runs``, Adam and AMSGrad first."""
    keys = {(r.updater, r.bias_correction) for r in runs} or \
        {(u, bc) for u in ("adam", "amsgrad") for bc in (True, False)}
    order = {"adam": 0, "amsgrad": 1}
    handles, labels = [], []
    for updater, bc in sorted(keys, key=lambda k: (order.get(k[0], 2), k[0], k[1] is None,
                                                   k[1] is False)):
        handles.append(Line2D([], [], color=color(updater, bc), lw=2))
        labels.append(rule_label(updater) + ("" if bc is None else
                                             f", bias correction {'on' if bc else 'off'}"))
    return handles, labels


def _other_axes(runs):
    """The axes a panel does not show that vary within a rule (beta1, variant, ...):
    they get line styles in the 'mean' view."""
    panel = ("updater", "learning_rate", "beta2", "bias_correction")
    rules = {r.updater for r in runs}
    return tuple(a for a in grid_axes(runs) if a not in panel and any(
        len({r.hparams.get(a) for r in runs if r.updater == u}) > 1 for u in rules))


def mean_band(runs, metric, alpha=0.05):
    """The mean of ``metric`` over ``runs`` (seeds) per epoch, and its two-sided
    ``1 - alpha`` t interval: ``(epochs, mean, lo, hi)``.

    At each epoch the runs that reached it with a finite value count (a diverged run's
    NaN does not); the interval is ``mean ± t_{1-alpha/2, n-1} s / sqrt(n)``, NaN where
    fewer than 2 runs count.
    """
    from experiments.analysis.stats import _scipy_stats

    epochs = np.unique(np.concatenate([r.epoch for r in runs])) if runs else np.array([])
    mean, half = np.full(len(epochs), np.nan), np.full(len(epochs), np.nan)
    t = _scipy_stats().t
    for i, e in enumerate(epochs):
        y = np.array([r.curves[metric][r.epoch == e][0] for r in runs if np.any(r.epoch == e)])
        y = y[np.isfinite(y)]
        if y.size:
            mean[i] = y.mean()
        if y.size >= 2:
            half[i] = t.ppf(1 - alpha / 2, y.size - 1) * y.std(ddof=1) / np.sqrt(y.size)
    return epochs, mean, mean - half, mean + half


def _draw_means(ax, panel, metric, others, styles):
    """The 'mean' view of one panel: per rule and setting, mean line and 95% band."""
    groups = {}
    for r in panel:
        extra = tuple(r.hparams.get(a) for a in others)
        groups.setdefault((r.updater, r.bias_correction, extra), []).append(r)
    for (updater, bc, extra), members in sorted(groups.items(), key=lambda kv: (
            kv[0][1] is not False, kv[0][0], str(kv[0][2]))):
        x, mean, lo, hi = mean_band(members, metric)
        c = color(updater, bc)
        label = rule_label(updater) + "".join(f", {a}={v:g}" if isinstance(v, float) else
                                              f", {a}={v}" for a, v in zip(others, extra)
                                              if v is not None)
        ax.fill_between(x, lo, hi, color=c, alpha=0.25, lw=0)
        ax.plot(x, mean, color=c, lw=1.2, ls=styles.get(extra, "-"),
                label=f"{label} (n={len(members)})")


def _fmt(value):
    return f"{value:g}"


def plot_metric(runs, metric, view="full", title=None):
    """One figure of ``metric`` for ``runs``: a panel per (lr, beta2), a line per run.

    Parameters
    ----------
    runs : list of Run
    metric : {'loss', 'val_loss', 'acc', 'val_acc'}
    view : {'full', 'last', 'best', 'mean'}
        ``full``: all epochs, y-limits shared by the panels, from the runs that did not
        diverge. ``last``: the last 20% of the epochs, y-limits per panel fitted to the
        data there. ``best``: around each panel's best epochs (validation metrics).
        ``mean``: as ``full``, but per rule and setting the mean over seeds and its 95%
        band (:func:`mean_band`) instead of a line per run.
    title : str, optional
        Prefix of the figure's title (e.g. the grid's name).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if view not in ("full", "last", "best", "mean"):
        raise ValueError(f"unknown view {view!r}; expected 'full', 'last', 'best' or 'mean'")
    runs = [r for r in runs if len(r.epoch)]
    lrs = sorted({r.learning_rate for r in runs}, reverse=True) or [None]
    beta2s = sorted({r.beta2 for r in runs}, key=_order_key) or [None]
    others = _other_axes(runs) if view == "mean" else ()
    styles = dict(_styles(runs, others))
    n_epochs = int(max((r.epoch[-1] for r in runs), default=1))
    fig = Figure(figsize=(3.6 * len(beta2s) + 0.4, 2.8 * len(lrs) + 0.9),
                 layout="constrained")
    axes = fig.subplots(len(lrs), len(beta2s), squeeze=False, sharex=view in ("full", "mean"))
    if view in ("full", "mean"):
        shared = _limits(_finite([r.curves[metric] for r in _good(runs)]), metric) \
            or _limits(_finite([r.curves[metric] for r in runs]), metric)
    k = max(2, math.ceil(LAST_FRACTION * n_epochs))
    x0, x1 = max(1, n_epochs - k + 1), n_epochs
    for i, lr in enumerate(lrs):
        for j, beta2 in enumerate(beta2s):
            ax = axes[i, j]
            panel = [r for r in runs if (r.learning_rate, r.beta2) == (lr, beta2)]
            if view == "mean":
                _draw_means(ax, panel, metric, others, styles)
            # Bias correction off first, so the lighter lines lie underneath.
            for r in sorted(panel, key=lambda r: (r.bias_correction is not False, r.updater,
                                                  r.seed)) if view != "mean" else ():
                ax.plot(r.epoch, r.curves[metric], color=color(r.updater, r.bias_correction),
                        lw=0.9, alpha=0.9, label=os.path.basename(r.path))
            if lr is not None:
                ax.set_title(f"lr={_fmt(lr)}" + ("" if beta2 is None else f", β2={_fmt(beta2)}"),
                             fontsize=10)
            if not panel:
                ax.text(0.5, 0.5, "no runs yet", transform=ax.transAxes, ha="center",
                        va="center", color="0.5")
            if i == len(lrs) - 1:
                ax.set_xlabel("epoch")
            if j == 0:
                ax.set_ylabel(LABELS[metric])
            ax.grid(True, lw=0.3, alpha=0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if view in ("full", "mean"):
                ax.set_xlim(1, max(n_epochs, 2))
                if shared:
                    ax.set_ylim(*shared)
            elif view == "last" and panel:
                ax.set_xlim(x0, x1 + 1e-9 if x1 > x0 else x0 + 1)
                lim = _limits(_window_values(_good(panel), metric, x0, x1), metric) \
                    or _limits(_window_values(panel, metric, x0, x1), metric)
                if lim:
                    ax.set_ylim(*lim)
            elif view == "best" and panel:
                _best_view(ax, panel, metric, n_epochs)
    suffix = {"full": "", "last": f" (last {x1 - x0 + 1} epochs)", "best": " (best epochs)",
              "mean": " (mean over seeds, 95% band)"}
    fig.suptitle((f"{title}: " if title else "") + LABELS[metric] + suffix[view])
    handles, labels = _legend_handles(runs)
    for extra, style in styles.items():
        handles.append(Line2D([], [], color="0.3", lw=1.2, ls=style))
        labels.append(", ".join(f"{a}={_fmt(v) if isinstance(v, float) else v}"
                                for a, v in zip(others, extra) if v is not None))
    # As many legend columns as the figure's width holds (one panel: one column),
    # so the legend stays inside the figure.
    fit = max(1, int((3.6 * len(beta2s) + 0.4) // 2.6))
    fig.legend(handles, labels, loc="outside lower center", fontsize=9, frameon=False,
               ncol=min(fit, 2 if len(handles) == 4 else len(handles)))
    return fig


def _styles(runs, others):
    """``[(values on the other axes, line style)]``, the values in ascending order; runs
    of a rule that takes none of those axes (all ``None``) keep the plain line."""
    extras = {tuple(r.hparams.get(a) for a in others) for r in runs} if others else ()
    extras = sorted((e for e in extras if any(v is not None for v in e)),
                    key=lambda e: tuple(_order_key(v) for v in e))
    return [(e, _STYLES[i % len(_STYLES)]) for i, e in enumerate(extras)]


def save_figure(fig, stem, formats=("png", "pdf"), dpi=120):
    """Write ``fig`` to ``stem.png`` and ``stem.pdf`` atomically; returns the paths."""
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi)
        atomic_write_bytes(f"{stem}.{fmt}", buf.getvalue())
        paths.append(f"{stem}.{fmt}")
    return paths


def figure_names():
    """The figures of a grid, in order: ``(metric, view, file stem)``."""
    return [(m, v, m if v == "full" else f"{m}_{v}") for m in METRICS for v in VIEWS[m]]


def plot_grid(runs, out_dir, title=None, progress=None):
    """Write every figure of one grid into ``out_dir``; returns the written paths.

    ``progress``: an optional callable invoked after each figure (e.g. a tqdm update).
    """
    paths = []
    for metric, view, stem in figure_names():
        fig = plot_metric(runs, metric, view, title=title)
        paths += save_figure(fig, os.path.join(out_dir, stem))
        if progress:
            progress()
    return paths


# The synthetic problem ---------------------------------------------------------------

SYNTHETIC_FILE = TRAJECTORIES_FILE  # written by experiments.synthetic.run_synthetic


def read_synthetic(results_dir):
    """Trajectories of the synthetic problem in ``results_dir``:
    ``{(problem, rule): (steps, x)}`` (:func:`experiments.results.trajectories.read_trajectories`)."""

    path = os.path.join(os.fspath(results_dir), SYNTHETIC_FILE)
    try:
        data = read_trajectories(path)
    except FileNotFoundError:
        raise ResultsError(f"no {SYNTHETIC_FILE} in {os.fspath(results_dir)!r}") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ResultsError(f"cannot read {path}: {e}") from None
    if not data:
        raise ResultsError(f"{path}: no rows")
    return data


#: Another library's variant of a rule (experiments.config.synthetic_keys.RULES): its own colour and
#: dash, so it stays visible where it runs on top of the experiment's rule.
VARIANT_STYLES = {"pytorch": ("PyTorch", "#e08214", (0, (5, 2))),
                  "optax": ("optax", "#7b3294", (0, (1, 1.5)))}


def _rule_style(rule):
    """(label, colour, dash) of a synthetic rule such as ``amsgrad`` or ``adam_optax``."""
    base, _, variant = rule.partition("_")
    label = {"adam": "Adam", "amsgrad": "AMSGrad"}.get(base, base)
    if variant in VARIANT_STYLES:
        name, color, dash = VARIANT_STYLES[variant]
        return f"{label} ({name})", color if base == "amsgrad" else COLORS["adam", False], dash
    return label, COLORS["amsgrad" if base == "amsgrad" else "adam", True], "-"


def plot_synthetic(results_dir, title="synthetic problem"):
    """x over the steps, a panel per problem; Adam blue, AMSGrad red, other libraries'
    variants in their own dashes; optimum x = -1 dashed."""
    data = read_synthetic(results_dir)
    problems = sorted({p for p, _ in data})
    fig = Figure(figsize=(5.0 * len(problems) + 0.4, 3.6), layout="constrained")
    axes = fig.subplots(1, len(problems), squeeze=False)[0]
    for ax, problem in zip(axes, problems):
        for (p, rule), (steps, x) in sorted(data.items()):
            if p == problem:
                label, color, dash = _rule_style(rule)
                ax.plot(steps, x, color=color, ls=dash, lw=1.0, label=label)
        ax.axhline(-1.0, color="k", ls="--", lw=0.8, label="optimum x = -1")
        ax.set_ylim(-1.1, 1.1)
        ax.set_title(f"{problem} problem", fontsize=10)
        ax.set_xlabel("step")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4))
        ax.grid(True, lw=0.3, alpha=0.5)
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("x")
    fig.suptitle(title)
    return fig


def save_synthetic(results_dir, out_dir=None):
    """Draw the synthetic problem's figure of ``results_dir`` to
    ``<out_dir>/synthetic.png`` and ``.pdf``, by default beside its trajectories (where
    the grid runner draws it, so a redraw replaces it); returns the paths written."""
    return save_figure(plot_synthetic(results_dir),
                       os.path.join(os.fspath(out_dir or results_dir), "synthetic"))


def synthetic_dirs(results_dir):
    """The folders at or below ``results_dir`` that hold synthetic trajectories."""
    return sorted(folder for folder, _, files in os.walk(os.fspath(results_dir))
                  if SYNTHETIC_FILE in files)
