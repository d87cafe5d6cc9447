"""What runs train on: the dataset registry, loading and preparing a dataset, and each
epoch's batch plan.

:mod:`~experiments.data.registry` holds one entry per dataset (MNIST and CIFAR-10
register themselves in :mod:`~experiments.data.mnist` and :mod:`~experiments.data.cifar10`);
:mod:`~experiments.data.loading` loads one by name and prepares it as a run's setup says;
:mod:`~experiments.data.batches` draws each epoch's batches from ``(seed, epoch)``.
"""
from experiments.data.batches import epoch_batches, flip_images
from experiments.data.loading import (Dataset, DataError, DataRequest, load_dataset, preprocess,
                                      resolve_data_dir, subset, subtract_training_mean)
from experiments.data.registry import DatasetEntry, dataset_names, get_dataset, register_dataset
# They register themselves, in the order names are listed: MNIST first.
from experiments.data import mnist  # noqa: E402,I001
from experiments.data import cifar10  # noqa: E402

__all__ = ["Dataset", "DataError", "DataRequest", "DatasetEntry", "load_dataset", "preprocess", "subset",
           "resolve_data_dir", "subtract_training_mean", "epoch_batches", "flip_images",
           "register_dataset", "get_dataset", "dataset_names", "cifar10", "mnist"]
