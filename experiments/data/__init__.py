"""What runs train on: MNIST and CIFAR-10 loaded and preprocessed as the original
experiments did, their download, and each epoch's batch plan."""
from experiments.data.loading import (CIFAR10_MD5, MNIST_MIRRORS, Dataset, DataError,  # noqa: F401
                                      epoch_batches, flip_images, load_dataset, preprocess,
                                      resolve_data_dir, subset, subtract_training_mean)
