"""The engine interface, and what every engine shares.

An engine compiles one model spec (:mod:`experiments.models`) for one dataset and
one set of optimizer hyperparameters, holds the run's arrays (parameters, batch-norm
running statistics, optimizer state) and trains them epoch by epoch (:class:`Engine`:
JAX or Theano). The trainer (:mod:`experiments.training`) talks to one interface,
:class:`EngineGroup` (K >= 1 runs, one value per run), which the grouped JAX engine
implements and :class:`GroupOfOne` gives any :class:`Engine`; so every engine gets
the same schedule, curves, checkpoints and divergence handling.

Checkpoint arrays
-----------------
:meth:`Engine.dump` returns, and :meth:`Engine.load` takes, a flat
``dict[str, np.ndarray]`` whose names say what each array is:

==========================  ==================================================
``param:<name>``            trainable parameters (``param:conv1.W``), float32
``state:<name>``            batch-norm running statistics (``state:conv1_bn.mean``,
                            ``state:conv1_bn.inv_std``), float32
``opt:t``                   update steps taken so far (int64 scalar)
``opt:m:<param>``           Adam family: first moment, float32
``opt:v:<param>``           Adam family: second moment (raw, uncorrected)
``opt:v_hat:<param>``       AMSGrad: running maximum of ``v``
``opt:velocity:<param>``    momentum, nesterov_momentum: velocity
``opt:<slot>[:<param>]``    any other rule: its registry entry's names
                            (:mod:`experiments.optimizers.state_names`)
==========================  ==================================================

The names do not depend on the engine, so a checkpoint written by one engine loads
into another; :func:`array_shapes` lists them for a spec and a run's optimizer, and
:func:`check_arrays` checks a checkpoint against that list.
"""
import abc
from collections import OrderedDict

import numpy as np

from experiments.engines import get_engine

from experiments import models
from experiments.config.setup_keys import SetupKeys, he_gain_value

#: Predictions are clipped to ``[CLIP, 1 - CLIP]`` before the log of the cross-entropy
#: (Lasagne's experiment code); a saturated wrong prediction costs ``-log(CLIP)``
#: = 16.118 and has zero gradient.
CLIP = 1e-7


def optimizer_shapes(spec, optimizer):
    """Ordered ``{name: shape}`` of the optimizer state arrays (``opt:...``) of a run
    with ``optimizer`` (:class:`~experiments.optimizers.Optimizer`): the step count
    ``opt:t``, then its rule's state (its registry entry says which)."""
    shapes = OrderedDict([("opt:t", ())])
    state = optimizer.state_shapes(models.param_shapes(spec))
    shapes.update((f"opt:{name}", shape) for name, shape in state.items() if name != "t")
    return shapes


def array_shapes(spec, optimizer):
    """Ordered ``{name: shape}`` of everything :meth:`Engine.dump` returns."""
    shapes = OrderedDict((f"param:{k}", s) for k, s in models.param_shapes(spec).items())
    shapes.update((f"state:{k}", s) for k, s in models.state_shapes(spec).items())
    shapes.update(optimizer_shapes(spec, optimizer))
    return shapes


def check_arrays(arrays, spec, optimizer):
    """Raise ``ValueError`` naming the first missing, unexpected or misshapen array."""
    expected = array_shapes(spec, optimizer)
    missing = [k for k in expected if k not in arrays]
    extra = [k for k in arrays if k not in expected]
    if missing or extra:
        raise ValueError(f"checkpoint does not fit model {spec.name!r} with updater "
                         f"{optimizer.name!r}: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, shape in expected.items():
        if tuple(np.shape(arrays[name])) != tuple(shape):
            raise ValueError(f"checkpoint array {name!r} has shape {np.shape(arrays[name])},"
                             f" expected {tuple(shape)}")


def initial_arrays(spec, optimizer, seed, setup=None):
    """A fresh run's arrays: ``models.init_params`` (with the ``setup``'s He gain),
    ``models.init_state``, zero optimizer state. Engines start from these, so every
    engine starts identically."""
    gain = he_gain_value((setup or SetupKeys()).he_gain)
    arrays = OrderedDict((f"param:{k}", v)
                         for k, v in models.init_params(spec, seed, gain).items())
    arrays.update((f"state:{k}", v) for k, v in models.init_state(spec).items())
    for name, shape in optimizer_shapes(spec, optimizer).items():
        arrays[name] = (np.zeros((), np.int64) if name == "opt:t"
                        else np.zeros(shape, np.float32))
    return arrays


def split_arrays(arrays):
    """``(params, state, opt)``: three ordered dicts with the prefixes stripped
    (``opt`` keeps ``t`` and ``<slot>:<param>`` names)."""
    out = (OrderedDict(), OrderedDict(), OrderedDict())
    for name, value in arrays.items():
        kind, _, rest = name.partition(":")
        out[("param", "state", "opt").index(kind)][rest] = value
    return out


def validation_means(sums, n, batch_size, average="examples"):
    """Validation means from per-batch sums ``(..., n_batches)`` over ``n`` examples in
    batches of ``batch_size`` (the last one may be short): over ``'examples'``, or the
    unweighted mean of the per-batch means (``'batches'``, the original logs' way),
    in float64."""
    sums = np.ascontiguousarray(sums)
    if average == "examples":
        return np.sum(sums, axis=-1, dtype=np.float64) / n
    if average != "batches":
        raise ValueError(f"unknown val_average {average!r}; choose from examples, batches")
    sizes = np.minimum(batch_size, n - batch_size * np.arange(sums.shape[-1]))
    return np.mean(sums.astype(np.float64) / sizes, axis=-1)


def dropout_seed(seed, epoch):
    """A 31-bit integer seed for epoch ``epoch``'s dropout masks, for engines whose
    random streams take an integer seed (Theano's MRG). Derived from
    ``(seed, epoch)`` alone, so a resumed run draws the same masks."""
    return int(np.random.default_rng([seed, 2, epoch]).integers(1, 2 ** 31 - 1))


class Engine(abc.ABC):
    """A model spec compiled for training and evaluation.

    Parameters
    ----------
    spec : experiments.models.ModelSpec
    dataset : experiments.data.Dataset or None
        Float32 ``x_train (N, C, H, W)``, int32 ``y_train``, ``x_val``, ``y_val``.
        ``None`` allows only :meth:`forward` and :meth:`train_steps`.
    optimizer : experiments.optimizers.Optimizer
        The run's rule and its values (:meth:`~experiments.optimizers.Optimizer.of`).
    seed : int
        Initial arrays come from :func:`initial_arrays` (``models.init_params(spec,
        seed)``); dropout masks derive from ``(seed, epoch)``.
    dropout : bool
        ``False`` turns dropout off in training (for comparing engines step by step).
    setup : experiments.config.setup_keys.SetupKeys, optional
        He gain, validation averaging, pooling tie gradient, precision (default: as
        before those were keys); one the engine cannot honour is a ``ValueError``.
    """

    #: Short name used in status files ('jax', 'theano').
    name = None

    def __init__(self, spec, dataset, optimizer, seed, dropout=True, setup=None):
        self.spec = spec
        self.dataset = dataset
        self.optimizer = optimizer
        self.seed = int(seed)
        self.dropout = bool(dropout)
        self.setup = setup or SetupKeys()
        problem = get_engine(self.name).problem(self.setup, [optimizer.rule])
        if problem:
            raise ValueError(problem)

    def info(self):
        """Facts for the run's status file: library versions, device (JSON-able)."""
        return {}

    def as_group(self):
        """This run as a group of one (:class:`GroupOfOne`), as the trainer drives it."""
        return GroupOfOne(self, self.seed)

    @abc.abstractmethod
    def load(self, arrays):
        """Replace every array of the run by ``arrays`` (see the module docstring);
        raises ``ValueError`` if they do not fit (:func:`check_arrays`)."""

    @abc.abstractmethod
    def dump(self):
        """``dict[str, np.ndarray]``: a copy of everything a checkpoint holds."""

    @abc.abstractmethod
    def train_epoch(self, epoch, lr, indices, flips=None):
        """Train one epoch in training mode; returns ``(mean loss, mean accuracy)``
        over its batches.

        Parameters
        ----------
        epoch : int
            0-based; with ``seed`` it fixes the dropout masks.
        lr : float
            Learning rate for every step of this epoch.
        indices : int array (n_batches, batch_size)
            Training-set rows of each batch (``data.epoch_batches``).
        flips : bool array like ``indices``, or None
            Mirror those images left-right before the step.
        """

    @abc.abstractmethod
    def evaluate(self, batch_size=1024):
        """``(val_loss, val_acc)`` in deterministic mode over the whole validation set,
        means as the setup's ``val_average`` says (:func:`validation_means`)."""

    @abc.abstractmethod
    def forward(self, x, deterministic=True):
        """Class probabilities for the float32 batch ``x`` (numpy in, numpy out).
        ``deterministic=False`` uses batch statistics (and dropout if enabled) without
        updating the running averages."""

    @abc.abstractmethod
    def train_steps(self, x_batches, y_batches, lr):
        """One update per batch of ``x_batches (S, B, C, H, W)``, ``y_batches (S, B)``;
        returns the ``S`` training losses (numpy). For comparing engines; dropout
        follows the ``dropout`` flag (masks as in epoch 0)."""


class EngineGroup(abc.ABC):
    """K >= 1 runs of one model spec trained together: the one interface the trainer
    (:func:`experiments.training.train_runs`) talks to.

    :class:`~experiments.engines.jax_group.GroupEngine` implements it for K runs in one
    compiled program; :class:`GroupOfOne` for any single-run :class:`Engine` (JAX or
    Theano). Every method has one value per run, in the order the runs were given.
    """

    #: number of runs
    size = None
    #: the seeds whose batch plans an epoch takes, in the order the engine uses them
    seed_order = None

    def info(self):
        """Facts for the runs' status files (JSON-able), as :meth:`Engine.info`."""
        return {}

    @abc.abstractmethod
    def load(self, arrays):
        """``arrays``: one dict of :meth:`Engine.dump` form per run."""

    @abc.abstractmethod
    def dump(self):
        """One dict of :meth:`Engine.dump` form per run."""

    @abc.abstractmethod
    def train_epoch(self, epoch, lrs, active, plans):
        """Train one epoch; returns ``(losses, accs)``, one value per run (NaN for an
        inactive run, whose arrays stay untouched).

        Parameters
        ----------
        epoch : int
        lrs : sequence of float
            Each run's learning rate for this epoch.
        active : sequence of bool
            Which runs train (a run resumed further on, or diverged, sits out).
        plans : dict
            seed -> ``(indices, flips)`` of :func:`experiments.data.epoch_batches`.
        """

    @abc.abstractmethod
    def evaluate(self, batch_size=1024):
        """``(val_losses, val_accs)``, one value per run, as :meth:`Engine.evaluate`."""


class GroupOfOne(EngineGroup):
    """A single-run :class:`Engine` as a group of one (:class:`EngineGroup`)."""

    def __init__(self, engine, seed):
        self.engine, self.seed = engine, int(seed)
        self.size, self.seed_order = 1, [self.seed]

    def info(self):
        return self.engine.info()

    def load(self, arrays):
        self.engine.load(arrays[0])

    def dump(self):
        return [self.engine.dump()]

    def train_epoch(self, epoch, lrs, active, plans):
        if not active[0]:
            return np.full(1, np.nan), np.full(1, np.nan)
        loss, acc = self.engine.train_epoch(epoch, lrs[0], *plans[self.seed])
        return np.array([loss]), np.array([acc])

    def evaluate(self, batch_size=1024):
        return tuple(np.array([v]) for v in self.engine.evaluate(batch_size))
