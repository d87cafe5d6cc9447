"""How figures look and are written: each rule's colour and drawing order (from its
registry entry), the formats, and the atomic write of a figure."""
import io

from matplotlib.backend_bases import FigureCanvasBase

from experiments import optimizers
from experiments.results.files import atomic_write_bytes

__all__ = ["FORMATS", "color", "rule_order", "check_formats", "save_figure"]

FORMATS = ("png", "pdf")  # what plot_grid writes unless told otherwise
#: Colours (and their light shades) of rules without colours of their own (optax's
#: others): none of them a registered rule's.
_PALETTE = (("#e6ab02", "#f5d77f"), ("#7570b3", "#bcb9dc"), ("#e7298a", "#f39bc6"),
            ("#66a61e", "#b8dc8c"), ("#a6761d", "#d9b77a"))


def color(updater, bias_correction=True):
    """A rule's colour (its registry entry's, else one of a palette chosen by its name);
    the lighter shade with bias correction off."""
    rule = optimizers.get_rule(updater) if optimizers.is_rule(updater) else None
    pair = (rule and rule.colors) or _PALETTE[sum(map(ord, updater)) % len(_PALETTE)]
    return pair[bias_correction is False]


def rule_order(updater):
    """Legend and drawing order: the registry's (the post's Adam, AMSGrad first), then
    any other rule by name."""
    names = optimizers.rule_names()
    return (names.index(updater) if updater in names else len(names), updater)


def check_formats(formats):
    """``formats`` as a tuple of lower-case names matplotlib can write; ValueError
    naming one it cannot (and the ones it can)."""
    known = FigureCanvasBase.get_supported_filetypes()
    out = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in formats if f.strip()))
    for fmt in out:
        if fmt not in known:
            raise ValueError(f"unknown figure format {fmt!r}; choose from "
                             f"{', '.join(sorted(known))}")
    if not out:
        raise ValueError("no figure format given")
    return out


def save_figure(fig, stem, formats=FORMATS, dpi=120):
    """Write ``fig`` to ``stem.<format>`` for each of ``formats`` (default PNG and
    PDF), each atomically; returns the paths."""
    paths = []
    for fmt in check_formats(formats):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi)
        atomic_write_bytes(f"{stem}.{fmt}", buf.getvalue())
        paths.append(f"{stem}.{fmt}")
    return paths

