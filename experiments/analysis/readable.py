"""Numbers and counts as a reader wants them in a report.

A difference is rounded to what its confidence interval can say (two significant digits
of the interval's half-width), so ``-2.22e-17`` -- a difference that is zero to rounding --
prints as ``0``; p-values get two significant digits; accuracies are read in percent
(differences in percentage points); counts agree with their noun (``1 epoch``).
"""
import math

__all__ = ["AXIS_NAMES", "plural", "places", "fixed", "number", "p_value", "estimate",
           "percent", "cell", "setting_text"]

MAX_PLACES = 6  # decimals of a difference at most (1e-6: a millionth of a point or a loss)

# How an axis is named in a setting's text (else its key).
AXIS_NAMES = {"learning_rate": "lr", "beta1": "β1", "beta2": "β2", "epsilon": "ε",
              "bias_correction": "bias correction", "weight_decay": "weight decay"}


def plural(n, word, many=None):
    """``plural(1, 'epoch')`` -> ``'1 epoch'``; ``plural(3, 'epoch')`` -> ``'3 epochs'``."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def _finite(x):
    try:
        return x is not None and not isinstance(x, str) and math.isfinite(x)
    except TypeError:
        return False


def places(values, sig=2):
    """Decimal places that give the largest finite non-zero ``|value|`` ``sig``
    significant digits (0 when there is none)."""
    sizes = [abs(v) for v in values if _finite(v) and v != 0]
    if not sizes:
        return 0
    return max(0, sig - 1 - math.floor(math.log10(max(sizes))))


def fixed(x, decimals):
    """``x`` with ``decimals`` places; ``'n/a'`` when not finite; ``'0'`` when it
    rounds to zero (never ``-0.00``)."""
    if not _finite(x):
        return "n/a"
    text = f"{x:.{decimals}f}"
    return "0" if float(text) == 0 else text


def number(x, sig=2):
    """``x`` to ``sig`` significant digits, without an exponent: 0.0252 -> '0.025'."""
    if not _finite(x):
        return "n/a"
    rounded = float(f"{x:.{sig}g}")  # 0.0999 -> 0.1, not 0.100
    return fixed(rounded, places([rounded], sig))


def p_value(p):
    """Two significant digits; ``'< 0.0001'`` below that."""
    if not _finite(p):
        return "n/a"
    return "< 0.0001" if p < 1e-4 else number(p, 2)


def estimate(mean, ci, scale=1.0):
    """``(mean, low, high)`` as text, times ``scale``, each to the decimals that give
    the interval's half-width two significant digits (the mean's own two digits when
    there is no interval), at most :data:`MAX_PLACES`: ``(0.00087, (0.00018, 0.00157),
    100)`` -> ``('0.087', '0.018', '0.157')``."""
    low, high = ci if ci is not None else (math.nan, math.nan)
    values = [v * scale if _finite(v) else math.nan for v in (mean, low, high)]
    half = (values[2] - values[1]) / 2 if all(map(_finite, values[1:])) else math.nan
    decimals = places([half]) if _finite(half) and half > 0 else places([values[0]])
    # no more than float noise: a difference of 1e-17 is zero to any reader
    return tuple(fixed(v, min(decimals, MAX_PLACES)) for v in values)


def percent(x, decimals=2):
    """An accuracy in percent: 0.93046 -> '93.05%'."""
    return "n/a" if not _finite(x) else f"{fixed(100 * x, decimals)}%"


def cell(value):
    """A hyperparameter's value in a table: ``on``/``off``, ``0.001``; ``–`` for None
    (the rule does not take it)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_text(row, axes):
    """``lr=0.001, β2=0.999, bias correction on``: a setting in words (the axes it has
    a value on)."""
    return ", ".join(f"{AXIS_NAMES.get(a, a)} {cell(row[a])}" if isinstance(row[a], bool)
                     else f"{AXIS_NAMES.get(a, a)}={cell(row[a])}" for a in axes
                     if row.get(a) is not None)
