"""Each epoch's batch plan: which training examples each batch holds, and which are
flipped. Drawn from ``(seed, epoch)`` alone, so a resumed run continues exactly."""
import numpy as np

__all__ = ["epoch_batches", "flip_images"]


def epoch_batches(seed, epoch, n_train, batch_size=128, flip=False):
    """The training batches of one epoch: example indices and flip masks.

    Everything is drawn from ``np.random.default_rng([seed, 1, epoch])`` in this
    order: a permutation of ``range(n_train)``; then, to fill up the last incomplete
    batch, examples drawn uniformly (with replacement) from all ``n_train``; then, if
    ``flip``, one fair coin per example. So every batch has exactly ``batch_size``
    examples (50,000 -> 391 batches), and an epoch is reproducible from
    ``(seed, epoch)`` alone, e.g. after a resume.

    Returns
    -------
    indices : int32 array (n_batches, batch_size)
    flips : bool array of the same shape, or None if not ``flip``
    """
    for label, value, low in (("seed", seed, 0), ("epoch", epoch, 0),
                              ("n_train", n_train, 1), ("batch_size", batch_size, 1)):
        if int(value) != value or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    n_train, batch_size = int(n_train), int(batch_size)
    rng = np.random.default_rng([int(seed), 1, int(epoch)])
    n_batches = -(-n_train // batch_size)
    order = rng.permutation(n_train)
    fill = rng.integers(0, n_train, size=n_batches * batch_size - n_train)
    indices = np.concatenate([order, fill]).astype(np.int32).reshape(n_batches, batch_size)
    flips = rng.random(indices.shape) < 0.5 if flip else None
    return indices, flips


def flip_images(x, flips):
    """Reference augmentation: flip ``x[i]`` left-right (last axis) where ``flips[i]``."""
    x = np.asarray(x)
    flips = np.asarray(flips, dtype=bool).reshape((-1,) + (1,) * (x.ndim - 1))
    return np.where(flips, x[..., ::-1], x)
