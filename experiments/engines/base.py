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
==========================  ==================================================

The names do not depend on the engine, so a checkpoint written by one engine loads
into another; :func:`array_shapes` lists them for a spec and hyperparameters, and
:func:`check_arrays` checks a checkpoint against that list.
"""
import abc
from collections import OrderedDict
from dataclasses import dataclass, fields

import numpy as np

from experiments import models
from experiments.config import run_keys
from experiments.config.run_keys import ADAM_FAMILY, RULES as UPDATERS, VARIANTS  # noqa: F401
from experiments.config.setup_keys import Setup, engine_problem, he_gain_value

#: Predictions are clipped to ``[CLIP, 1 - CLIP]`` before the log of the cross-entropy
#: (Lasagne's experiment code); a saturated wrong prediction costs ``-log(CLIP)``
#: = 16.118 and has zero gradient.
CLIP = 1e-7

#: The rule a run steps with in a program (adam, amsgrad and adamw: one, with switches).
optimizer_family = run_keys.family


@dataclass(frozen=True)
class Hyperparameters:
    """Optimizer hyperparameters of a run, except the learning rate.

    The learning rate changes every epoch (the schedule) and is passed to
    :meth:`Engine.train_epoch`; everything here is fixed for the whole run. Values
    are checked, and default, as :data:`experiments.run_keys.TABLE` says; a rule
    ignores the keys it does not take.

    Parameters
    ----------
    updater : {'adam', 'amsgrad', 'adamw', 'sgd', 'momentum', 'nesterov_momentum'}
    beta1, beta2, epsilon : float
        Adam family only.
    bias_correction : bool
        Adam family: scale the step by ``sqrt(1 - beta2**t) / (1 - beta1**t)``.
    variant : {'lasagne', 'pytorch', 'optax'}
        Where the AMSGrad max is taken and where epsilon enters (the experiment
        uses 'lasagne'); see :func:`amsgrad.rules.adam_step`.
    momentum : float
        'momentum' and 'nesterov_momentum' only.
    weight_decay : float
        'adamw' only: decoupled decay ``lr * weight_decay * param``.
    amsgrad : bool
        Keep AMSGrad's running maximum: true for 'amsgrad', as given for 'adamw',
        false otherwise.
    """
    updater: str = "amsgrad"
    beta1: float = run_keys.default("beta1")
    beta2: float = run_keys.default("beta2")
    epsilon: float = run_keys.default("epsilon")
    bias_correction: bool = run_keys.default("bias_correction")
    variant: str = run_keys.default("variant")
    momentum: float = run_keys.default("momentum")
    weight_decay: float = run_keys.default("weight_decay")
    amsgrad: bool = run_keys.default("amsgrad")

    def __post_init__(self):
        for f in fields(self):
            try:
                object.__setattr__(self, f.name, run_keys.check(f.name, getattr(self, f.name)))
            except ValueError as e:
                raise ValueError(f"{f.name}: {e}") from None
        object.__setattr__(self, "amsgrad", self.updater == "amsgrad"
                           or (self.updater == "adamw" and self.amsgrad))

    @classmethod
    def from_run(cls, run):
        """The hyperparameters of a run: a :class:`~experiments.run_keys.RunConfig`
        or a run dict (checked as one)."""
        if not isinstance(run, run_keys.RunConfig):
            run = run_keys.RunConfig.from_run(run)
        return cls(**{f.name: getattr(run, f.name) for f in fields(cls)
                      if getattr(run, f.name) is not None})


def optimizer_shapes(spec, hparams):
    """Ordered ``{name: shape}`` of the optimizer state arrays (``opt:...``)."""
    shapes = OrderedDict([("opt:t", ())])
    params = models.param_shapes(spec)
    if hparams.updater in ADAM_FAMILY:
        slots = ("m", "v", "v_hat") if hparams.amsgrad else ("m", "v")
    elif run_keys.takes(hparams.updater, "momentum"):
        slots = ("velocity",)
    else:
        slots = ()
    for slot in slots:
        for name, shape in params.items():
            shapes[f"opt:{slot}:{name}"] = shape
    return shapes


def array_shapes(spec, hparams):
    """Ordered ``{name: shape}`` of everything :meth:`Engine.dump` returns."""
    shapes = OrderedDict((f"param:{k}", s) for k, s in models.param_shapes(spec).items())
    shapes.update((f"state:{k}", s) for k, s in models.state_shapes(spec).items())
    shapes.update(optimizer_shapes(spec, hparams))
    return shapes


def check_arrays(arrays, spec, hparams):
    """Raise ``ValueError`` naming the first missing, unexpected or misshapen array."""
    expected = array_shapes(spec, hparams)
    missing = [k for k in expected if k not in arrays]
    extra = [k for k in arrays if k not in expected]
    if missing or extra:
        raise ValueError(f"checkpoint does not fit model {spec.name!r} with updater "
                         f"{hparams.updater!r}: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, shape in expected.items():
        if tuple(np.shape(arrays[name])) != tuple(shape):
            raise ValueError(f"checkpoint array {name!r} has shape {np.shape(arrays[name])},"
                             f" expected {tuple(shape)}")


def initial_arrays(spec, hparams, seed, setup=None):
    """A fresh run's arrays: ``models.init_params`` (with the ``setup``'s He gain),
    ``models.init_state``, zero optimizer state. Engines start from these, so every
    engine starts identically."""
    gain = he_gain_value((setup or Setup()).he_gain)
    arrays = OrderedDict((f"param:{k}", v)
                         for k, v in models.init_params(spec, seed, gain).items())
    arrays.update((f"state:{k}", v) for k, v in models.init_state(spec).items())
    for name, shape in optimizer_shapes(spec, hparams).items():
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
    hparams : Hyperparameters
    seed : int
        Initial arrays come from :func:`initial_arrays` (``models.init_params(spec,
        seed)``); dropout masks derive from ``(seed, epoch)``.
    dropout : bool
        ``False`` turns dropout off in training (for comparing engines step by step).
    setup : experiments.setup_keys.Setup, optional
        He gain, validation averaging, pooling tie gradient, precision (default: as
        before those were keys); one the engine cannot honour is a ``ValueError``.
    """

    #: Short name used in status files ('jax', 'theano').
    name = None

    def __init__(self, spec, dataset, hparams, seed, dropout=True, setup=None):
        self.spec = spec
        self.dataset = dataset
        self.hparams = hparams
        self.seed = int(seed)
        self.dropout = bool(dropout)
        self.setup = setup or Setup()
        problem = engine_problem(self.name, self.setup)
        if problem:
            raise ValueError(problem)

    def info(self):
        """Facts for the run's status file: library versions, device (JSON-able)."""
        return {}

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
