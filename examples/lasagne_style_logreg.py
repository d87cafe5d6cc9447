"""Logistic regression on MNIST in plain Lasagne-style Theano or PyTensor, trained with
AMSGrad.

The pattern of the original experiment code: parameters are shared variables, the
loss is a symbolic expression, ``amsgrad(loss, params, ...)`` returns the updates,
and one compiled ``theano.function(..., updates=updates)`` is called per mini-batch.
The learning rate is a shared variable, decayed linearly once per epoch. PyTensor,
Theano's maintained successor, runs the same code under its own name
(``pytensor.shared``, ``pytensor.function``, ``pytensor.tensor``).

    python examples/lasagne_style_logreg.py --data-dir ../shared/data --epochs 1
    python examples/lasagne_style_logreg.py --library pytensor --data-dir ../shared/data

By default it runs on the library installed: Theano where it is (Theano 1.0.5, the Theano
environment of the README), else PyTensor (``pip install -e ".[pytensor]"``).
"""
import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from tqdm import tqdm  # noqa: E402

from amsgrad import amsgrad  # noqa: E402
from experiments.data import DataError, epoch_batches, load_dataset  # noqa: E402
from experiments.results.faults import StorageError  # noqa: E402

LIBRARIES = ("theano", "pytensor")  # the first installed is the default


def installed_library(asked="auto"):
    """``asked``, or for 'auto' the first of :data:`LIBRARIES` installed here; a
    ``LookupError`` (one line: what to install) when it is not."""
    choices = LIBRARIES if asked == "auto" else (asked,)
    for name in choices:
        if importlib.util.find_spec(name) is not None:
            return name
    what = f"neither {' nor '.join(choices)} is" if len(choices) > 1 else f"{asked} is not"
    raise LookupError(f"{what} installed in this Python ({sys.executable}); pip install -e "
                      f"'.[pytensor]', or use the Theano environment of the README")


def tensor_library(name):
    """``(library, tensor module, softmax)`` of Theano or PyTensor, computing in float32."""
    if name == "theano":
        from experiments.engines.theano_env import theano  # Theano's flags first
        import theano.tensor as T
        return theano, T, T.nnet.softmax
    import pytensor
    pytensor.config.floatX = "float32"  # as THEANO_FLAGS does for Theano
    import pytensor.tensor as pt
    from pytensor.tensor.special import softmax
    return pytensor, pt, lambda z: softmax(z, axis=-1)


def build(seed, lr, beta2, bias_correction, library="theano"):
    """Shared parameters, a compiled training step and a validation function."""
    theano, T, softmax = tensor_library(library)
    floatX = theano.config.floatX
    rng = np.random.default_rng(seed)
    bound = np.sqrt(6.0 / (784 + 10))  # Glorot uniform, Lasagne's DenseLayer default
    W = theano.shared(rng.uniform(-bound, bound, (784, 10)).astype(floatX), name="W")
    b = theano.shared(np.zeros(10, floatX), name="b")
    learning_rate = theano.shared(np.asarray(lr, floatX), name="learning_rate")

    x, y = T.matrix("x"), T.ivector("y")
    prediction = softmax(T.dot(x, W) + b)
    # Categorical cross-entropy, clipped before the log as the experiments do.
    clipped = T.clip(prediction, 1e-7, 1 - 1e-7)
    loss = -T.mean(T.log(clipped[T.arange(y.shape[0]), y]))
    accuracy = T.mean(T.eq(T.argmax(prediction, axis=1), y))

    updates = amsgrad(loss, [W, b], learning_rate=learning_rate, beta1=0.9, beta2=beta2,
                      epsilon=1e-8, bias_correction=bias_correction)
    train = theano.function([x, y], loss, updates=updates)
    validate = theano.function([x, y], [loss, accuracy])
    return learning_rate, train, validate, floatX


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", choices=("auto",) + LIBRARIES, default="auto",
                        help="tensor library of the graph (default: auto, Theano where it "
                             "is installed, else PyTensor)")
    parser.add_argument("--data-dir", help="folder with mnist/ (default: see experiments.data)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--beta2", type=float, default=0.999)
    parser.add_argument("--no-bias-correction", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-download", action="store_true",
                        help="fail instead of downloading missing MNIST files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if not args.lr > 0:
        parser.error(f"--lr must be positive, got {args.lr}")
    if not 0 <= args.beta2 < 1:
        parser.error(f"--beta2 must be in [0, 1), got {args.beta2}")

    try:
        library = installed_library(args.library)
        data = load_dataset("mnist", args.data_dir, download=not args.no_download,
                            quiet=args.quiet)
        learning_rate, train, validate, floatX = build(args.seed, args.lr, args.beta2,
                                                       not args.no_bias_correction, library)
    except (LookupError, DataError, StorageError) as error:  # StorageError: a data folder
        print(f"error: {error}", file=sys.stderr)            # or compile cache
        return 1
    print(f"{library}: logistic regression on MNIST, AMSGrad", flush=True)
    x_train = data.x_train.reshape(len(data.x_train), -1)
    x_val = data.x_val.reshape(len(data.x_val), -1)

    for epoch in range(args.epochs):
        lr = args.lr * (1 - epoch / args.epochs)  # linear decay, once per epoch
        learning_rate.set_value(np.asarray(lr, floatX))
        indices, _ = epoch_batches(args.seed, epoch, len(x_train), batch_size=128)
        losses = [float(train(x_train[idx], data.y_train[idx]))
                  for idx in tqdm(indices, desc=f"epoch {epoch + 1}", disable=args.quiet,
                                  leave=False)]
        sums = np.zeros(2)
        for start in range(0, len(x_val), 1024):
            batch = slice(start, start + 1024)
            n = len(data.y_val[batch])
            sums += n * np.asarray(validate(x_val[batch], data.y_val[batch]), dtype=float)
        val_loss, val_acc = sums / len(x_val)
        print(f"epoch {epoch + 1}/{args.epochs}  lr {lr:.6f}  loss {np.mean(losses):.4f}  "
              f"val_loss {val_loss:.4f}  val_acc {val_acc:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
