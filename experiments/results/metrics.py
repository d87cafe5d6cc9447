"""The metrics of a run's curves: one entry each, read by the records and the figures.

The four measured every epoch are columns of ``curves.csv`` (:data:`CURVE_FIELDS`):
``loss`` and ``acc`` (means over the epoch's training batches, as trained), ``val_loss``
and ``val_acc`` (the validation set, deterministic). Another metric computed from a
run's rows is one entry (``derive``: a function of a curves row), e.g. the validation
error or the generalisation gap; the analysis gets it as if it were a column (in
:class:`~experiments.analysis.records.Run` curves, the long table, the figures).
"""
import dataclasses
from typing import Callable, Optional

__all__ = ["Metric", "register_metric", "unregister_metric", "metrics", "get_metric",
           "value"]


@dataclasses.dataclass(frozen=True)
class Metric:
    """``name`` (a curves column, or the name of a derived metric), ``label`` (in
    figures), ``higher_is_better``, ``validation`` (measured on the validation set: its
    figures include the region of the best epochs), ``derive`` (None: a column of
    curves.csv; else ``row -> value``)."""
    name: str
    label: str
    higher_is_better: bool
    validation: bool = False
    derive: Optional[Callable] = None

    @property
    def views(self):
        """The figures of this metric: every epoch, the last ones, the best ones (for
        a validation metric), the mean over seeds."""
        return ("full", "last", "best", "mean") if self.validation else ("full", "last", "mean")


_METRICS = {}


def register_metric(metric, replace=False):
    if metric.name in _METRICS and not replace:
        raise ValueError(f"a metric named {metric.name!r} is registered already")
    _METRICS[metric.name] = metric
    return metric


def unregister_metric(name):
    _METRICS.pop(name, None)


def metrics():
    """Every registered metric, in order (the measured ones first)."""
    return tuple(_METRICS.values())


def get_metric(name):
    try:
        return _METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose from "
                         f"{', '.join(_METRICS)}") from None


def value(metric, row):
    """``metric``'s value in a curves row (NaN where the row lacks what it needs)."""
    try:
        return float(row[metric.name] if metric.derive is None else metric.derive(row))
    except (KeyError, TypeError, ValueError):
        return float("nan")


for _metric in (Metric("loss", "training loss", False),
                Metric("val_loss", "validation loss", False, validation=True),
                Metric("acc", "training accuracy", True),
                Metric("val_acc", "validation accuracy", True, validation=True)):
    register_metric(_metric)
