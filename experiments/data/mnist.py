"""MNIST as the original experiments used it: the four IDX files, pixels / 256, the last
10,000 training images as the validation set. The per-pixel training mean is
subtracted unless a config says otherwise (the code always did: ``subtract_mean``'s
default here).

Local copies are read from ``<data_dir>/mnist/`` (or ``<data_dir>``), gzip-compressed or
not; missing files are downloaded and verified against the md5 of the official
uncompressed bytes, so any gzip recompression is accepted. Mirrors can be changed with
``$AMSGRAD_MNIST_MIRRORS`` (base URLs separated by spaces or commas).
"""
import gzip
import os
import zlib

import numpy as np

from experiments.data import download as dl
from experiments.data.loading import HINT, Dataset, DataError
from experiments.data.registry import DatasetEntry, register_dataset

__all__ = ["MNIST_MIRRORS", "MNIST_MD5", "load_mnist", "ENTRY"]

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/")
#: md5 of the UNCOMPRESSED official IDX files (only the training files are used).
MNIST_MD5 = {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
             "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624"}


def load_mnist(root, download, quiet):
    images = _read_idx(_mnist_file(root, "train-images-idx3-ubyte", download, quiet),
                       (60000, 28, 28))
    labels_path = _mnist_file(root, "train-labels-idx1-ubyte", download, quiet)
    labels = _read_idx(labels_path, (60000,))
    if labels.max() > 9:
        bad = int(np.argmax(labels > 9))
        raise DataError(f"{labels_path}: label {labels[bad]} at index {bad} is outside 0..9")
    x = images.reshape(-1, 1, 28, 28).astype(np.float32)
    x /= np.float32(256)
    y = labels.astype(np.int32)
    return Dataset("mnist", x[:50000], y[:50000], x[50000:], y[50000:], flip=False,
                   mean_subtracted=False)


def _mnist_file(root, name, download, quiet):
    """Path of a local copy (uncompressed or .gz, in root/mnist or root), else download."""
    for folder in (root / "mnist", root):
        for candidate in (folder / name, folder / (name + ".gz")):
            if candidate.is_file():
                return candidate
    target = root / "mnist" / (name + ".gz")
    where = f"MNIST file {target.name} not found in {target.parent}"
    if not download:
        raise DataError(f"{where} (downloads disabled); {HINT}")
    mirrors = os.environ.get("AMSGRAD_MNIST_MIRRORS", "").replace(",", " ").split()
    urls = [base.rstrip("/") + "/" + target.name for base in mirrors or MNIST_MIRRORS]
    expected = MNIST_MD5[name]

    def verify(path):
        try:
            digest = dl.md5sum(gzip.decompress(path.read_bytes()))
        except (OSError, EOFError, zlib.error) as e:
            return f"not a valid gzip file ({dl.one_line(e)})"
        if digest != expected:
            return f"md5 of the uncompressed data is {digest}, expected {expected}"
        return None

    try:
        return dl.fetch(urls, target, verify=verify, quiet=quiet)
    except dl.DownloadError as e:
        raise DataError(f"{where} and the download failed: {e}; {HINT}") from None


def _read_idx(path, shape):
    """The uint8 array of an IDX file (gzip or not), checked against ``shape``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {dl.one_line(e)}") from None
    ndim = len(shape)
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DataError(f"{path} is not an IDX file of unsigned bytes with {ndim} "
                        f"dimension(s) (magic number {raw[:4].hex() or 'missing'}, "
                        f"expected 000008{ndim:02x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: the IDX header is incomplete")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    if dims != shape:
        raise DataError(f"{path} holds an array of shape {dims}, expected {shape}")
    size = header + int(np.prod(shape))
    if len(raw) != size:
        problem = "is truncated" if len(raw) < size else "has trailing bytes"
        raise DataError(f"{path} {problem}: {len(raw)} bytes, expected {size}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


ENTRY = register_dataset(DatasetEntry(
    "mnist", load_mnist, input_shape=(1, 28, 28), classes=10, augmentation="none",
    subtract_mean=True, description="MNIST digits: 50,000 training images, the last "
    "10,000 of the training file for validation", sizes=(50000, 10000)))
