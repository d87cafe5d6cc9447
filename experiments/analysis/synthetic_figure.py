"""The synthetic problem's figure (:mod:`experiments.synthetic`): x over the steps, a
panel per problem (online, stochastic); Adam blue, AMSGrad red, other libraries' variants
of a rule in dashes of their own, and the optimum x = -1 dashed in black, drawn over the
rules (AMSGrad runs along it) and inside the frame.

Its names are also those of :mod:`experiments.analysis.figures` (where the grid runner
and ``plot.py`` find them); it takes that module's colours and writer when it draws.
"""
import os

from matplotlib.figure import Figure

from experiments.analysis import style
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


#: Another library's variant of a rule (experiments.synthetic.RULES): its own colour and
#: dash, so it stays visible where it runs on top of the experiment's rule.
VARIANT_STYLES = {"pytorch": ("PyTorch", "#e08214", (0, (5, 2))),
                  "optax": ("optax", "#7b3294", (0, (1, 1.5)))}


def _rule_style(rule):
    """(label, colour, dash) of a synthetic rule such as ``amsgrad`` or ``adam_optax``."""
    base, _, variant = rule.partition("_")
    label = rule_label(base)
    if variant in VARIANT_STYLES:
        name, color, dash = VARIANT_STYLES[variant]
        return f"{label} ({name})", color if base == "amsgrad" else style.color("adam", False), dash
    return label, style.color("amsgrad" if base == "amsgrad" else "adam"), "-"


def plot_synthetic(results_dir, title="synthetic problem"):
    """x over the steps, a panel per problem; Adam blue, AMSGrad red, other libraries'
    variants in their own dashes; the optimum x = -1 black and dashed, drawn over the
    rules (AMSGrad runs along it) and inside the frame."""
    data = read_synthetic(results_dir)
    problems = sorted({p for p, _ in data})
    fig = Figure(figsize=(5.0 * len(problems) + 0.4, 3.6), layout="constrained")
    axes = fig.subplots(1, len(problems), squeeze=False)[0]
    for ax, problem in zip(axes, problems):
        for (p, rule), (steps, x) in sorted(data.items()):
            if p == problem:
                label, color, dash = _rule_style(rule)
                ax.plot(steps, x, color=color, ls=dash, lw=1.0, label=label)
        # on top, with gaps the rule under it shows through
        ax.axhline(-1.0, color="k", ls=(0, (4, 4)), lw=1.2, zorder=3, label="optimum x = -1")
        ax.set_ylim(-1.15, 1.15)
        ax.set_title(f"{problem} problem", fontsize=10)
        ax.set_xlabel("step")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4))
        ax.grid(True, lw=0.3, alpha=0.5)
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("x")
    fig.suptitle(title)
    return fig


def save_synthetic(results_dir, out_dir=None, formats=("png", "pdf")):
    """Draw the synthetic problem's figure of ``results_dir`` to
    ``<out_dir>/synthetic.png`` and ``.pdf`` (or ``formats``), by default beside its
    trajectories (where the grid runner draws it, so a redraw replaces it); returns the
    paths written."""
    return style.save_figure(plot_synthetic(results_dir),
                       os.path.join(os.fspath(out_dir or results_dir), "synthetic"), formats)


def synthetic_dirs(results_dir):
    """The folders at or below ``results_dir`` that hold synthetic trajectories."""
    return sorted(folder for folder, _, files in os.walk(os.fspath(results_dir))
                  if SYNTHETIC_FILE in files)
