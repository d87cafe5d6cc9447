"""Loading a registered dataset (:mod:`experiments.data.registry`) and preparing it as a
run's setup says: the training mean subtracted or not, the first N examples kept.

Layout of a data directory (``--data-dir``, else ``$AMSGRAD_DATA_DIR``, else
``~/.cache/amsgrad-experiments/data``)::

    <data_dir>/mnist/train-images-idx3-ubyte.gz     (or uncompressed, without .gz;
    <data_dir>/mnist/train-labels-idx1-ubyte.gz      the files may also sit in <data_dir>)
    <data_dir>/cifar-10-batches-py/data_batch_1..5, test_batch
    <data_dir>/cifar-10-python.tar.gz               (optional: extracted when the
                                                     folder above is missing)

Missing files are downloaded from the official sources and verified against the
official checksums before use (each dataset's module says how).

Mean subtraction is one function for every dataset (:func:`preprocess`): the per-pixel
mean of all training images in float64, cast to float32, subtracted from training and
validation images alike (before any ``train_subset`` is taken).
"""
import copy
import dataclasses
import errno
import os
from pathlib import Path

import numpy as np

from experiments.data.registry import UnknownDataset, get_dataset
from experiments.results import faults

DEFAULT_DATA_DIR = Path("~/.cache/amsgrad-experiments/data")
HINT = "point --data-dir (or AMSGRAD_DATA_DIR) at a directory holding local copies"
WHERE = "--data-dir (or AMSGRAD_DATA_DIR)"  # what chooses the data folder


class DataError(Exception):
    """A user-facing data problem (missing file, failed checksum, bad file); one line.
    ``key``: the config key it is about, if any (``train_subset``)."""

    def __init__(self, message, key=None):
        super().__init__(message)
        self.key = key


@dataclasses.dataclass(repr=False)
class Dataset:
    """Preprocessed arrays: float32 images (N, C, H, W), int32 labels."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    flip: bool = False  # default augmentation: random left-right flips
    mean_subtracted: bool = None  # None: arrays made by hand, taken as they are

    def __repr__(self):
        return (f"Dataset({self.name!r}, train {self.x_train.shape}, val {self.x_val.shape}, "
                f"flip={self.flip}, mean_subtracted={self.mean_subtracted})")


def resolve_data_dir(data_dir=None):
    """The data directory: ``data_dir``, else ``$AMSGRAD_DATA_DIR``, else the user cache."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get("AMSGRAD_DATA_DIR")
    return Path(chosen or DEFAULT_DATA_DIR).expanduser()


def load_dataset(name, data_dir=None, download=True, quiet=False, subtract_mean=None):
    """Load the registered dataset ``name`` (``'mnist'``, ``'cifar10'``, ...), prepared as
    the original experiments did.

    Parameters
    ----------
    name : str
        A dataset of :mod:`experiments.data.registry`.
    data_dir : path, optional
        See :func:`resolve_data_dir` and the module docstring for the layout.
    download : bool
        Fetch missing files from the official sources (verified); if False, a
        missing file is a :class:`DataError` without touching the network.
    quiet : bool
        No download progress bar.
    subtract_mean : bool, optional
        Subtract the training mean (:func:`preprocess`); default: the dataset's
        (``DatasetEntry.subtract_mean``: MNIST yes, CIFAR-10 no).

    Raises
    ------
    DataError
        Unknown dataset, missing and not downloadable, failed checksum, or a malformed
        file.
    experiments.results.faults.StorageError
        The data folder cannot be written (a download or an extraction into it) or is a
        file; the message names it and ``--data-dir`` / ``AMSGRAD_DATA_DIR``.
    """
    try:
        entry = get_dataset(name)
    except UnknownDataset as e:
        raise DataError(str(e)) from None
    root = resolve_data_dir(data_dir)
    # a download that cannot be written there (a full disk, a read-only folder, a file in
    # the way): one line naming the folder and what moves it
    with faults.writing_to(root, WHERE):
        if root.exists() and not root.is_dir():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(root))
        dataset = entry.load(root, download, quiet)
    return preprocess(dataset, subtract_mean)


def subtract_training_mean(x_train, x_val):
    """``(x_train - mean, x_val - mean)``: the per-pixel mean of ``x_train`` taken in
    float64 and cast to float32 first, as the original code did."""
    mean = np.asarray(x_train).mean(axis=0, dtype=np.float64).astype(np.float32)
    return np.asarray(x_train, np.float32) - mean, np.asarray(x_val, np.float32) - mean


def preprocess(dataset, subtract_mean=None):
    """``dataset`` with the training mean subtracted (:func:`subtract_training_mean`)
    or not, as ``subtract_mean`` says (None: the registered dataset's default,
    ``DatasetEntry.subtract_mean``).

    A dataset whose ``mean_subtracted`` is None (made by hand) is taken as it is; one
    already subtracted cannot be asked for without the subtraction (``ValueError``).
    """
    if dataset.mean_subtracted is None:  # made by hand: taken as it is
        return dataset
    want = get_dataset(dataset.name).subtract_mean if subtract_mean is None else subtract_mean
    if bool(dataset.mean_subtracted) == bool(want):
        return dataset
    if not want:
        raise ValueError(f"the {dataset.name} images given have the training mean "
                         f"subtracted; load them with subtract_mean=False")
    x_train, x_val = subtract_training_mean(dataset.x_train, dataset.x_val)
    return dataclasses.replace(dataset, x_train=x_train, x_val=x_val, mean_subtracted=True)


def subset(dataset, train_subset=None, val_subset=None):
    """A shallow copy of ``dataset`` keeping the first ``train_subset`` training and
    ``val_subset`` validation examples (``None``: all)."""
    out = copy.copy(dataset)
    for part, n in (("train", train_subset), ("val", val_subset)):
        if n is not None:
            available = len(getattr(dataset, f"y_{part}"))
            if not 1 <= int(n) <= available:
                raise ValueError(f"{part}_subset must be in 1..{available}, got {n!r}")
            setattr(out, f"x_{part}", getattr(dataset, f"x_{part}")[:int(n)])
            setattr(out, f"y_{part}", getattr(dataset, f"y_{part}")[:int(n)])
    return out




@dataclasses.dataclass(frozen=True)
class DataRequest:
    """The data a run asks for: dataset ``name`` with the training mean subtracted or
    not (``subtract_mean``; None: the dataset's default) and its first ``train_subset``
    / ``val_subset`` examples (None: all). Loading and preparing happen here alone, so
    a grid that loads the data once and a run that gets it prepare it the same way."""
    name: str
    subtract_mean: bool = None
    train_subset: int = None
    val_subset: int = None

    @classmethod
    def of(cls, run):
        """The request of a run dict (or a grid's fixed settings)."""
        return cls(run["dataset"], run.get("subtract_mean"), run.get("train_subset"),
                   run.get("val_subset"))

    def load(self, data_dir=None, load_fn=None, quiet=False):
        """The dataset, loaded (by ``load_fn(name, data_dir=, quiet=)``, default
        :func:`load_dataset` without the mean subtracted) and prepared."""
        if load_fn is None:
            return self.prepare(load_dataset(self.name, data_dir, quiet=quiet,
                                             subtract_mean=False))
        return self.prepare(load_fn(self.name, data_dir=data_dir, quiet=quiet))

    def prepare(self, dataset):
        """``dataset`` as requested (the same dataset if it is already). A subset larger
        than the data is a :class:`DataError` naming the key."""
        for key, n, have in (("train_subset", self.train_subset, len(dataset.y_train)),
                             ("val_subset", self.val_subset, len(dataset.y_val))):
            if n is not None and n > have:
                raise DataError(f"key {key!r}: {n} is more than the {have} examples "
                                f"{dataset.name} has", key=key)
        return subset(preprocess(dataset, self.subtract_mean), self.train_subset,
                      self.val_subset)
