"""The dataset registry: one entry per dataset a config may name.

A :class:`DatasetEntry` says what the suite needs of a dataset: how to load it, the
shape of one example and the number of classes (the models are built for them), its
default augmentation, and what a config that leaves ``subtract_mean`` out means for it
(what the code did before the key existed). MNIST and CIFAR-10 register themselves
(:mod:`experiments.data.mnist`, :mod:`experiments.data.cifar10`); another dataset is one
``register_dataset(DatasetEntry(...))`` and its loader (``tests/test_dataset_plugin.py``
registers one from a test file and trains logreg on it).
"""
import dataclasses
from typing import Callable, Optional, Tuple

__all__ = ["DatasetEntry", "UnknownDataset", "register_dataset", "get_dataset", "dataset_names",
           "AUGMENTATIONS"]

#: Augmentations a dataset may default to, and a config may ask for.
AUGMENTATIONS = ("none", "flip")


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """One dataset.

    ``load(root, download, quiet)`` returns a :class:`~experiments.data.loading.Dataset`
    of the images as stored (float32 ``(N, C, H, W)``, int32 labels, the training mean
    not subtracted, ``mean_subtracted=False``) from the data folder ``root`` (a
    ``pathlib.Path``), fetching what is missing if ``download``, or raises
    :class:`~experiments.data.loading.DataError` with one line. ``input_shape`` is one
    example's ``(C, H, W)``; ``classes`` the number of labels; ``augmentation`` the
    default (``'none'`` or ``'flip'``: random left-right flips, fresh every epoch);
    ``subtract_mean`` what a config without the key means: subtract the per-pixel
    training mean (:func:`~experiments.data.loading.subtract_training_mean`) or not.
    ``sizes``: ``(training, validation)`` examples as loaded (None: not stated), what a
    grid's cost is counted on before the data is loaded.
    """
    name: str
    load: Callable
    input_shape: Tuple[int, int, int]
    classes: int
    augmentation: str = "none"
    subtract_mean: bool = False
    description: str = ""
    sizes: Optional[Tuple[int, int]] = None

    def __post_init__(self):
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"dataset {self.name!r}: augmentation must be one of "
                             f"{', '.join(AUGMENTATIONS)}, got {self.augmentation!r}")


_DATASETS = {}


def register_dataset(entry, replace=False):
    """Add ``entry``; returns it. A name taken already is a ValueError unless ``replace``."""
    if entry.name in _DATASETS and not replace and _DATASETS[entry.name] is not entry:
        raise ValueError(f"a dataset named {entry.name!r} is registered already")
    _DATASETS[entry.name] = entry
    return entry


class UnknownDataset(ValueError):
    """A dataset name the registry does not hold; the message names those it does."""


def get_dataset(name):
    """The :class:`DatasetEntry` called ``name``; :class:`UnknownDataset` (a ValueError)
    with one line naming the registered ones otherwise."""
    try:
        return _DATASETS[name]
    except (KeyError, TypeError):
        raise UnknownDataset(f"unknown dataset {name!r}; choose from "
                             f"{', '.join(_DATASETS)}") from None


def dataset_names():
    return tuple(_DATASETS)
