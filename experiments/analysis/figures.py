"""The post's figures: learning curves of a grid, and the synthetic trajectories.

For each metric (training loss, validation loss, training accuracy, validation
accuracy) one figure with a panel per (learning rate, beta2) setting -- rows learning
rate, columns beta2 (a rule without beta2 in a column of its own; one column where each
rule ran at a beta2 of its own, as the studies of the fixes do) -- and one line per
run: Adam blue, AMSGrad red, other rules in colours of their own, lighter shades with
bias correction off. Besides the full curves there are zoomed views: the last epochs
(``last``; the post zooms into the final epochs of training loss) and, for the
validation metrics, the region around the best epochs (``best``); and ``mean``: per
rule and setting, the mean over seeds with its 95% t interval as a band (other axes of
the grid, such as beta1 or variant, drawn in line styles of their own).

Where rules run on top of each other, each stays visible: the rules are drawn in legend
order (Adam, AMSGrad, then the others), each narrower than the one before, so an earlier
rule shows as a border around a later one (from the third rule on, dashed as well).
Each panel's y-range fits its own data (``y_range='shared'``: one range for all panels,
as the post's figures); diverged runs (non-finite curves, or stuck at the clipped loss of
14.5) are drawn, but never set an axis' limits (:mod:`experiments.analysis.panels`).

Figures are written as PNG and PDF by default (any format matplotlib writes, e.g.
SVG), atomically, with the Agg backend.
"""
import math
import os

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from experiments.analysis.panels import (best_view, fit_panel, mean_band,  # noqa: E402
                                         trained, finite, limits)
from experiments.analysis.records import grid_axes, rule_label  # noqa: E402
# The synthetic problem's figure, in a module of its own; named here as ever (the grid
# runner draws it through this module).
from experiments.analysis.synthetic_figure import (SYNTHETIC_FILE, VARIANT_STYLES,  # noqa: E402
                                                   plot_synthetic, read_synthetic,
                                                   save_synthetic, synthetic_dirs)
from experiments.results.metrics import get_metric, metrics as all_metrics  # noqa: E402
from experiments.analysis.style import (FORMATS, check_formats, color, rule_order,  # noqa: E402
                                       save_figure)

__all__ = ["FORMATS", "Y_RANGES", "color", "line_width", "line_dash",
           "mean_band",
           "plot_metric", "figure_names", "plot_grid", "save_figure", "check_formats",
           "SYNTHETIC_FILE", "VARIANT_STYLES", "read_synthetic", "plot_synthetic",
           "save_synthetic", "synthetic_dirs"]


Y_RANGES = ("panel", "shared")
LAST_FRACTION = 0.2  # the 'last' view shows the last 20% of the epochs
_STYLES = ("-", "--", ":", "-.")
_DASHES = ((0, (4, 2)), (0, (1, 1.5)), (0, (4, 1.5, 1, 1.5)))


def line_width(rank):
    """The width of the ``rank``-th rule's lines (0: drawn first, widest): each rule
    narrower than the one before, so the earlier one shows as a border around it
    (2.6 pt under 1.3 pt: 0.65 pt a side, a pixel at the saved 120 dpi)."""
    return max(0.9, 2.6 * 0.5 ** rank)


def line_dash(rank):
    """The dash of the ``rank``-th rule's lines: solid for the first two; from the third
    on, whose width no longer shrinks, gaps through which the rules under it show."""
    return "-" if rank < 2 else _DASHES[(rank - 2) % len(_DASHES)]


def _ranks(runs):
    """``{updater: rank}`` of the rules among ``runs``, in :func:`rule_order`."""
    return {u: i for i, u in enumerate(sorted({r.updater for r in runs}, key=rule_order))}


def _order_key(value):
    return (value is None, 0.0 if value is None else value)


def _legend_handles(runs):
    """One entry per (rule, bias correction) among ``runs``, Adam and AMSGrad first."""
    keys = {(r.updater, r.bias_correction) for r in runs} or \
        {(u, bc) for u in ("adam", "amsgrad") for bc in (True, False)}
    ranks = {u: i for i, u in enumerate(sorted({k[0] for k in keys}, key=rule_order))}
    handles, labels = [], []
    for updater, bc in sorted(keys, key=lambda k: (rule_order(k[0]), k[1] is None,
                                                   k[1] is False)):
        handles.append(Line2D([], [], color=color(updater, bc),
                              lw=max(1.2, line_width(ranks[updater])),
                              ls=line_dash(ranks[updater])))
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


def _draw_means(ax, panel, metric, others, styles, ranks):
    """The 'mean' view of one panel: per rule and setting, mean line and 95% band,
    the rules in drawing order (bias correction off first within a rule)."""
    groups = {}
    for r in panel:
        extra = tuple(r.hparams.get(a) for a in others)
        groups.setdefault((r.updater, r.bias_correction, extra), []).append(r)
    for (updater, bc, extra), members in sorted(groups.items(), key=lambda kv: (
            ranks[kv[0][0]], kv[0][1] is not False, str(kv[0][2]))):
        x, mean, lo, hi = mean_band(members, metric)
        c = color(updater, bc)
        label = rule_label(updater) + "".join(f", {a}={v:g}" if isinstance(v, float) else
                                              f", {a}={v}" for a, v in zip(others, extra)
                                              if v is not None)
        ax.fill_between(x, lo, hi, color=c, alpha=0.2, lw=0)
        # another axis' value (beta1, variant, ...) takes the line style where it varies
        ax.plot(x, mean, color=c, lw=line_width(ranks[updater]),
                ls=styles.get(extra, line_dash(ranks[updater])),
                label=f"{label} (n={len(members)})")


def _draw_runs(ax, panel, metric, ranks):
    """A line per run: rule by rule in drawing order, bias correction off first
    within a rule (the lighter lines underneath)."""
    for r in sorted(panel, key=lambda r: (ranks[r.updater], r.bias_correction is not False,
                                          r.seed)):
        ax.plot(r.epoch, r.curves[metric], color=color(r.updater, r.bias_correction),
                lw=line_width(ranks[r.updater]), ls=line_dash(ranks[r.updater]), alpha=0.9,
                label=os.path.basename(r.path))


def _fmt(value):
    return f"{value:g}"


def _frame(ax, panel, metric, view, window, shared, n_epochs):
    """A panel's limits for its view (see :func:`plot_metric`)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if view in ("full", "mean"):
        ax.set_xlim(1, max(n_epochs, 2))
        lim = shared or (fit_panel(panel, metric) if panel else None)
        if lim:
            ax.set_ylim(*lim)
    elif view == "last" and panel:
        x0, x1 = window
        ax.set_xlim(x0, x1 + 1e-9 if x1 > x0 else x0 + 1)
        lim = fit_panel(panel, metric, x0, x1)
        if lim:
            ax.set_ylim(*lim)
    elif view == "best" and panel:
        best_view(ax, panel, metric, n_epochs)


def _label_panel(ax, panel, lr, beta2, metric, first_col, last_row):
    if lr is not None:
        own = beta2 is None or beta2 is _EACH_OWN
        ax.set_title(f"lr={_fmt(lr)}" + ("" if own else f", β2={_fmt(beta2)}"),
                     fontsize=10)
    if not panel:
        ax.text(0.5, 0.5, "no runs yet", transform=ax.transAxes, ha="center", va="center",
                color="0.5")
    if last_row:
        ax.set_xlabel("epoch")
    if first_col:
        ax.set_ylabel(get_metric(metric).label)
    ax.grid(True, lw=0.3, alpha=0.5)


def _check_view(metric, view, y_range):
    get_metric(metric)  # ValueError naming the metrics
    if view not in ("full", "last", "best", "mean"):
        raise ValueError(f"unknown view {view!r}; expected 'full', 'last', 'best' or 'mean'")
    if y_range not in Y_RANGES:
        raise ValueError(f"unknown y_range {y_range!r}; expected 'panel' or 'shared'")


def _legend(fig, runs, styles, others, width):
    handles, labels = _legend_handles(runs)
    for extra, style in styles.items():
        handles.append(Line2D([], [], color="0.3", lw=1.2, ls=style))
        labels.append(", ".join(f"{a}={_fmt(v) if isinstance(v, float) else v}"
                                for a, v in zip(others, extra) if v is not None))
    # As many legend columns as the figure's width holds, so it stays inside the figure.
    fit = max(1, int(width // 2.6))
    fig.legend(handles, labels, loc="outside lower center", fontsize=9, frameon=False,
               ncol=min(fit, 2 if len(handles) == 4 else len(handles)))


def plot_metric(runs, metric, view="full", title=None, y_range="panel"):
    """One figure of ``metric`` for ``runs``: a panel per (lr, beta2), a line per run.

    Parameters
    ----------
    runs : list of Run
    metric : {'loss', 'val_loss', 'acc', 'val_acc'}
    view : {'full', 'last', 'best', 'mean'}
        ``full``: all epochs. ``last``: the last 20% of the epochs, y-limits per panel
        fitted to the data there. ``best``: around each panel's best epochs (validation
        metrics). ``mean``: as ``full``, but per rule and setting the mean over seeds and
        its 95% band (:func:`mean_band`) instead of a line per run.
    title : str, optional
        Prefix of the figure's title (e.g. the grid's name).
    y_range : {'panel', 'shared'}
        ``full`` and ``mean`` views: each panel's y-limits fit its own runs (default),
        or one range fits every panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _check_view(metric, view, y_range)
    runs = [r for r in runs if len(r.epoch)]
    lrs = sorted({r.learning_rate for r in runs}, reverse=True) or [None]
    beta2s = _beta2_columns(runs)
    others = _other_axes(runs) if view == "mean" else ()
    styles, ranks = dict(_styles(runs, others)), _ranks(runs)
    n_epochs = int(max((r.epoch[-1] for r in runs), default=1))
    width = max(3.6 * len(beta2s) + 0.4, 6.4)  # one column still holds the title
    fig = Figure(figsize=(width, 2.8 * len(lrs) + 0.9),
                 layout="constrained")
    axes = fig.subplots(len(lrs), len(beta2s), squeeze=False, sharex=view in ("full", "mean"))
    shared = None
    if view in ("full", "mean") and y_range == "shared":
        shared = limits(finite([r.curves[metric] for r in trained(runs)]), metric) \
            or limits(finite([r.curves[metric] for r in runs]), metric)
    k = max(2, math.ceil(LAST_FRACTION * n_epochs))
    window = (max(1, n_epochs - k + 1), n_epochs)
    for i, lr in enumerate(lrs):
        for j, beta2 in enumerate(beta2s):
            ax = axes[i, j]
            panel = [r for r in runs if r.learning_rate == lr
                     and (beta2 is _EACH_OWN or r.beta2 == beta2)]
            if view == "mean":
                _draw_means(ax, panel, metric, others, styles, ranks)
            else:
                _draw_runs(ax, panel, metric, ranks)
            _label_panel(ax, panel, lr, beta2, metric, j == 0, i == len(lrs) - 1)
            _frame(ax, panel, metric, view, window, shared, n_epochs)
    suffix = {"full": "", "last": f" (last {window[1] - window[0] + 1} epochs)",
              "best": " (best epochs)", "mean": " (mean over seeds, 95% band)"}
    fig.suptitle((f"{title}: " if title else "") + get_metric(metric).label + suffix[view])
    _legend(fig, runs, styles, others, width)
    return fig


#: The one column of a grid whose rules each keep a beta2 of their own.
_EACH_OWN = object()


def _beta2_columns(runs):
    """A column per beta2 where some rule ran at more than one (the post's grids), else
    one column: rules at their own defaults (ADOPT's 0.9999, AdamNC's none) compared at
    one learning rate belong in one panel."""
    per_rule = {}
    for r in runs:
        per_rule.setdefault(r.updater, set()).add(r.beta2)
    values = set().union(*per_rule.values()) if per_rule else set()
    if len(values) > 1 and all(len(v) == 1 for v in per_rule.values()):
        return [_EACH_OWN]
    return sorted(values, key=_order_key) or [None]


def _styles(runs, others):
    """``[(values on the other axes, line style)]``, the values in ascending order; runs
    of a rule that takes none of those axes (all ``None``) keep the plain line."""
    extras = {tuple(r.hparams.get(a) for a in others) for r in runs} if others else ()
    extras = sorted((e for e in extras if any(v is not None for v in e)),
                    key=lambda e: tuple(_order_key(v) for v in e))
    return [(e, _STYLES[i % len(_STYLES)]) for i, e in enumerate(extras)]


def figure_names(metrics=None):
    """The figures of a grid, in order: ``(metric, view, file stem)``; ``metrics``: only
    those metrics' figures (default all)."""
    chosen = [m for m in all_metrics() if metrics is None or m.name in metrics]
    return [(m.name, v, m.name if v == "full" else f"{m.name}_{v}") for m in chosen
            for v in m.views]


def plot_grid(runs, out_dir, title=None, progress=None, metrics=None, formats=FORMATS,
              y_range="panel"):
    """Write the figures of one grid into ``out_dir``; returns the written paths.

    ``metrics``: only those metrics' figures (default every one); ``formats``: the file
    formats (default PNG and PDF); ``y_range``: see :func:`plot_metric`; ``progress``: an
    optional callable invoked after each figure (e.g. a tqdm update).
    """
    formats = check_formats(formats)
    paths = []
    for metric, view, stem in figure_names(metrics):
        fig = plot_metric(runs, metric, view, title=title, y_range=y_range)
        paths += save_figure(fig, os.path.join(out_dir, stem), formats)
        if progress:
            progress()
    return paths
