"""The Theano engine: the model specs compiled with Theano 1.0.5, CPU only, float32.

This is the reference engine. It builds each model as the original Lasagne code did
(:mod:`experiments.engines.theano_layers`: Theano's ``conv2d``, ``pool_2d``, Lasagne's
batch norm, LRN and dropout, ``T.nnet.softmax``, clipped categorical cross-entropy) and
trains it with the rule's Lasagne-style face (:mod:`amsgrad.updates` for the library's
rules, through their registry entries: :mod:`experiments.optimizers`) through
``theano.function(..., updates=...)``, one call per batch, the learning rate a shared
variable set once per epoch. It is meant for the CPU (Theano's GPU back end is not
supported on today's stacks) and builds every graph in float32, whatever ``floatX``
says.

Convolution orientation
-----------------------
Lasagne's ``Conv2DLayer`` flips its filters (``flip_filters=True``: a true
convolution); ``jax.lax.conv`` computes a cross-correlation. The initialisation is
symmetric in distribution, so either is a valid convention, but a checkpoint's
``conv*.W`` only means the same thing in both engines if both use the same one. Both
follow Lasagne: this engine compiles with ``filter_flip=True`` (:data:`FILTER_FLIP`)
and the JAX engine flips the kernel before ``lax.conv``, so a stored ``W`` is what
``lasagne.layers.Conv2DLayer`` would hold, and loads unchanged into Lasagne.

Optimizer state
---------------
The update rules create shared variables named ``<param>.m``, ``<param>.v``,
``<param>.v_hat``, ``<param>.velocity`` and ``t``; :meth:`TheanoEngine.dump` reports
them under the engine-independent names of :mod:`experiments.engines.base`
(``opt:m:<param>``, ..., ``opt:t``), so checkpoints move between engines.

Dropout masks come from Theano's ``MRG_RandomStreams`` (as Lasagne's ``DropoutLayer``),
reseeded at the start of every epoch from ``base.dropout_seed(seed, epoch)``; they are
reproducible, but not the JAX engine's masks.
"""
from collections import OrderedDict

import numpy as np

from experiments.engines.theano_env import theano  # sets Theano's flags before the imports below

import theano.tensor as T  # noqa: E402
from theano.sandbox.rng_mrg import MRG_RandomStreams  # noqa: E402

from experiments.data import flip_images  # noqa: E402
from . import base  # noqa: E402
from .theano_layers import get_output  # noqa: E402

#: Theano's ``filter_flip`` for every convolution (see the module docstring).
FILTER_FLIP = True

_FLOAT = "float32"


def _shared(value, name):
    return theano.shared(np.asarray(value, dtype=_FLOAT), name=name)


class TheanoEngine(base.Engine):
    """A model spec compiled with Theano (CPU, float32); see the module docstring.

    Parameters are as :class:`experiments.engines.base.Engine`. Compiling a conv net
    takes Theano a while the first time; the C code is cached in ``base_compiledir``
    (:mod:`experiments.theano_env`).
    """

    name = "theano"

    def __init__(self, spec, dataset, optimizer, seed, dropout=True, setup=None):
        super().__init__(spec, dataset, optimizer, seed, dropout, setup)  # checks the setup
        arrays = base.initial_arrays(spec, optimizer, seed, self.setup)
        params, state, _ = base.split_arrays(arrays)
        with theano.change_flags(floatX=_FLOAT):
            self._params = OrderedDict((k, _shared(v, k)) for k, v in params.items())
            self._state = OrderedDict((k, _shared(v, k)) for k, v in state.items())
            self._lr = _shared(0.0, "learning_rate")
            self._srng = MRG_RandomStreams(base.dropout_seed(self.seed, 0))
            # The graph is built now (it creates the optimizer's shared state); Theano
            # compiles it on the first training call, so forward-only use skips that.
            self._train_graph = self._build_train()
        self._functions = {}
        self.load(arrays)

    def info(self):
        return {"theano": theano.__version__, "numpy": np.__version__, "device": "cpu",
                "floatX": _FLOAT, "blas": theano.config.blas.ldflags or "numpy C-API"}

    # -- graphs ---------------------------------------------------------------------

    def _output(self, x, deterministic, with_dropout=False):
        return get_output(self.spec, x, self._params, self._state, deterministic,
                          srng=self._srng if with_dropout else None,
                          filter_flip=FILTER_FLIP)

    @staticmethod
    def _loss_acc(probs, y):
        clipped = T.clip(probs, base.CLIP, 1 - base.CLIP)
        losses = T.nnet.categorical_crossentropy(clipped, y)
        correct = T.eq(T.argmax(probs, axis=1), y)
        return losses, correct

    def _optimizer_updates(self, loss):
        # the rule's Lasagne-style face (its registry entry), the learning rate shared
        updates = self.optimizer.lasagne(loss, list(self._params.values()), self._lr)
        # The rules without a step counter get one, so every checkpoint holds opt:t.
        if not any(v.name == "t" for v in updates):
            t = theano.shared(np.int64(0), name="t")
            updates[t] = t + 1
        self._opt = OrderedDict()
        for var in updates:
            if var.name == "t":
                self._opt["t"] = var
            elif var.name not in self._params:
                param, slot = var.name.rsplit(".", 1)
                self._opt[f"{slot}:{param}"] = var
        return updates

    def _build_train(self):
        x, y = T.tensor4("x"), T.ivector("y")
        probs, bn_updates = self._output(x, deterministic=False, with_dropout=self.dropout)
        losses, correct = self._loss_acc(probs, y)
        loss = losses.mean()
        updates = self._optimizer_updates(loss)
        updates.update(bn_updates)
        return [x, y], [loss, T.cast(correct, _FLOAT).mean()], updates

    def _function(self, kind):
        """Compiled on first use: 'train', 'forward' (deterministic), 'forward_train',
        'evaluate'."""
        if kind not in self._functions:
            with theano.change_flags(floatX=_FLOAT):
                self._functions[kind] = self._compile(kind)
        return self._functions[kind]

    def _compile(self, kind):
        if kind == "train":
            inputs, outputs, updates = self._train_graph
            return theano.function(inputs, outputs, updates=updates,
                                   name=f"{self.spec.name}_train")
        x, y = T.tensor4("x"), T.ivector("y")
        probs, _ = self._output(x, deterministic=kind != "forward_train",
                                with_dropout=self.dropout)
        if kind == "evaluate":
            losses, correct = self._loss_acc(probs, y)
            return theano.function([x, y], [losses.sum(), correct.sum()])
        return theano.function([x], probs)  # the running averages are not updated

    # -- arrays ---------------------------------------------------------------------

    def load(self, arrays):
        base.check_arrays(arrays, self.spec, self.optimizer)
        params, state, opt = base.split_arrays(arrays)
        for group, values in ((self._params, params), (self._state, state), (self._opt, opt)):
            for name, var in group.items():
                dtype = var.get_value(borrow=True).dtype
                var.set_value(np.array(values[name], dtype=dtype))

    def dump(self):
        arrays = OrderedDict()
        for prefix, group in (("param", self._params), ("state", self._state)):
            for name, var in group.items():
                arrays[f"{prefix}:{name}"] = var.get_value()
        for name, var in self._opt.items():
            value = var.get_value()
            arrays[f"opt:{name}"] = np.asarray(np.rint(value), np.int64) if name == "t" else value
        # The order of array_shapes, whatever order the rules created their state in.
        return OrderedDict((k, arrays[k]) for k in base.array_shapes(self.spec, self.optimizer))

    # -- training and evaluation ----------------------------------------------------

    def _step_all(self, batches, lr, epoch):
        self._lr.set_value(np.asarray(lr, dtype=_FLOAT))
        self._srng.seed(base.dropout_seed(self.seed, epoch))
        train = self._function("train")
        return [train(x, y) for x, y in batches]

    def _data(self):
        if self.dataset is None:
            raise RuntimeError("this engine was built without a dataset")
        return self.dataset

    def train_epoch(self, epoch, lr, indices, flips=None):
        data = self._data()

        def batches():
            for i, idx in enumerate(np.asarray(indices)):
                x = data.x_train[idx]
                if flips is not None and np.any(flips[i]):
                    x = flip_images(x, flips[i])
                yield x, data.y_train[idx]

        results = np.array(self._step_all(batches(), lr, epoch), dtype=np.float64)
        loss, acc = results.mean(axis=0)
        return float(loss), float(acc)

    def train_steps(self, x_batches, y_batches, lr):
        batches = ((np.asarray(x, _FLOAT), np.asarray(y, np.int32))
                   for x, y in zip(x_batches, y_batches))
        return np.array([loss for loss, _ in self._step_all(batches, lr, epoch=0)], np.float32)

    def evaluate(self, batch_size=1024):
        fn, data = self._function("evaluate"), self._data()
        n = len(data.y_val)
        sums = np.array([fn(data.x_val[start:start + batch_size],
                            data.y_val[start:start + batch_size])
                         for start in range(0, n, batch_size)], np.float64)
        loss, acc = base.validation_means(sums.T, n, batch_size, self.setup.val_average)
        return float(loss), float(acc)

    def forward(self, x, deterministic=True):
        fn = self._function("forward" if deterministic else "forward_train")
        return fn(np.asarray(x, dtype=_FLOAT))


__all__ = ["TheanoEngine", "FILTER_FLIP"]
