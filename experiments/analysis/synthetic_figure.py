"""The synthetic problem's figure (:mod:`experiments.synthetic`): x over the steps, a
panel per problem (online, stochastic); Adam blue, AMSGrad red, other libraries' variants
of a rule in dashes of their own, and the optimum x = -1 dashed in black, drawn over the
rules (AMSGrad runs along it) and inside the frame.

Its names are also those of :mod:`experiments.analysis.figures` (where the grid runner
and ``plot.py`` find them); it takes that module's colours and writer when it draws.
"""
import itertools
import os

import numpy as np

from matplotlib.figure import Figure

from experiments.analysis import style
from experiments.config.synthetic_keys import lane_rule
from experiments.analysis.records import ResultsError, rule_label
from experiments.results.trajectories import TRAJECTORIES_FILE, read_trajectories

__all__ = ["SYNTHETIC_FILE", "VARIANT_STYLES", "read_synthetic", "plot_synthetic",
           "save_synthetic", "synthetic_dirs"]

SYNTHETIC_FILE = TRAJECTORIES_FILE  # written by experiments.synthetic.run_synthetic


def read_synthetic(results_dir):
    """Trajectories of the synthetic problem in ``results_dir``:
    ``{(problem, rule): (steps, x)}`` (see
    :func:`experiments.results.trajectories.read_trajectories`)."""

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


#: Another library's form of the Adam family (amsgrad_pytorch, adam_optax): its own colour
#: and dash, so it stays visible where it runs on top of the experiment's rule.
VARIANT_STYLES = {"pytorch": ("PyTorch", "#e08214", (0, (5, 2))),
                  "optax": ("optax", "#7b3294", (0, (1, 1.5)))}
_DASH = (0, (3, 1.5))  # another form of a rule (AdaBound's paper form, ...)


def lane_parts(lane):
    """``(rule name, beta2 or None)`` of a lane: ``yogi_b2=0.999`` -> ``('yogi', 0.999)``."""
    name, sep, beta2 = lane.rpartition("_b2=")
    return (name, float(beta2)) if sep else (lane, None)


#: Lines of at most this many points: a window's mean; a range wider than BAND somewhere
#: (a lane that bounces, such as AdaBound's SGD phase) is shaded.
POINTS, BAND = 400, 0.1


def windows(steps, x, points=POINTS):
    """``(steps, mean, low, high)`` of ``x`` over consecutive windows of recorded
    points, at most ``points`` of them (each at its window's last step; the last one
    maybe shorter, so the last step is kept); unchanged (low = high
    = x) when there are no more points than that."""
    width = -(-len(x) // points)
    if width == 1:
        return steps, x, x, x
    starts = np.arange(0, len(x), width)
    ends = np.minimum(starts + width, len(x))
    return (steps[ends - 1], np.add.reduceat(x, starts) / (ends - starts),
            np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts))


def _rule_style(name):
    """(label, colour, dash) of a lane's rule such as ``amsgrad``, ``adam_optax`` or
    ``adabound_paper``: the rule's colour, another form dashed."""
    rule, values = lane_rule(name)
    label, variant = rule_label(rule), values.get("variant")
    if variant in VARIANT_STYLES:
        form, color, dash = VARIANT_STYLES[variant]
        return f"{label} ({form})", color if rule == "amsgrad" else style.color(rule, False), dash
    if variant is not None:
        return f"{label} ({variant})", style.color(rule, False), _DASH
    return label, style.color(rule), "-"


def plot_synthetic(results_dir, title="synthetic problem", problems=None):
    """x over the steps (a window's mean, :func:`windows`), a panel per problem (and per beta2 of a sweep: a row each, or
    with one problem, two panels a row); a line per rule in its colour, another form of
    a rule dashed, the rules drawn in the registry's order each thinner than the one
    before (coinciding lines stay visible); the optimum x = -1 black and dashed, drawn
    over the rules and inside the frame. ``problems``: those to draw (default all)."""
    data = read_synthetic(results_dir)
    problems = sorted({p for p, _ in data} if problems is None else problems)
    beta2s = sorted({lane_parts(r)[1] for _, r in data}, key=lambda b: (b is None, b or 0))
    panels = list(itertools.product(beta2s, problems))
    cols = 2 if len(problems) == 1 and len(panels) > 1 else len(problems)
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(5.0 * cols + 0.4, 3.2 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    order = {name: style.rule_order(lane_rule(name)[0]) + (name,)
             for name in {lane_parts(r)[0] for _, r in data}}
    for k, (beta2, problem) in enumerate(panels):
        _draw_panel(axes[k], data, problem, beta2, order)
        if k % cols == 0:
            axes[k].set_ylabel("x")
    axes[0].legend(fontsize=7, loc="best")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def _draw_panel(ax, data, problem, beta2, order):
    lanes = sorted(((lane_parts(r)[0], xy) for (p, r), xy in data.items()
                    if p == problem and lane_parts(r)[1] == beta2),
                   key=lambda item: order[item[0]])
    for rank, (name, (steps, x)) in enumerate(lanes):
        label, color, dash = _rule_style(name)
        steps, x, low, high = windows(steps, x)
        ax.plot(steps, x, color=color, ls=dash, lw=max(0.8, 2.2 * 0.8 ** rank), label=label)
        if np.max(high - low) > BAND:  # a lane that bounces: its range, lightly
            ax.fill_between(steps, low, high, color=color, alpha=0.12, lw=0, zorder=0.5)
    ax.axhline(-1.0, color="k", ls=(0, (4, 4)), lw=1.2, zorder=3, label="optimum x = -1")
    ax.set_ylim(-1.15, 1.15)
    ax.set_title(f"{problem} problem" + ("" if beta2 is None else f", β2={beta2:g}"),
                 fontsize=10)
    ax.set_xlabel("step")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4))
    ax.grid(True, lw=0.3, alpha=0.5)


def save_synthetic(results_dir, out_dir=None, formats=("png", "pdf")):
    """Draw the synthetic problem's figure of ``results_dir`` to
    ``<out_dir>/synthetic.png`` and ``.pdf`` (or ``formats``), by default beside its
    trajectories (where the grid runner draws it, so a redraw replaces it); a beta2
    sweep gets a figure per problem instead, ``synthetic_<problem>.png``. Returns the
    paths written."""
    data = read_synthetic(results_dir)
    stem = os.path.join(os.fspath(out_dir or results_dir), "synthetic")
    if len({lane_parts(r)[1] for _, r in data}) == 1:
        return style.save_figure(plot_synthetic(results_dir), stem, formats)
    paths = []
    for problem in sorted({p for p, _ in data}):
        fig = plot_synthetic(results_dir, f"synthetic problem: {problem}", [problem])
        paths += style.save_figure(fig, f"{stem}_{problem}", formats)
    return paths


def synthetic_dirs(results_dir):
    """The folders at or below ``results_dir`` that hold synthetic trajectories."""
    return sorted(folder for folder, _, files in os.walk(os.fspath(results_dir))
                  if SYNTHETIC_FILE in files)
