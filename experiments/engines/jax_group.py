"""The grouped JAX engine: K runs of one model trained by one compiled program.

Runs of one rule family (:mod:`experiments.optimizers`: Adam, AMSGrad and AdamW are
one rule with switches) that differ only in its values and their seed are stepped
together: their parameters, batch-norm state and optimizer state are stacked, the
values are arrays of one value per run (``amsgrad`` and ``bias_correction`` boolean
arrays, so Adam and AMSGrad runs share a program), and one ``lax.scan`` runs a whole
epoch of all of them. The update is the family's transformation with the runs' values
laid out as the storage below (:meth:`~experiments.optimizers.Family.group_values`), a
step count per run, and :func:`amsgrad.optax.active_runs` for runs that sit an epoch
out. Compiled programs are shared by the engines of one configuration, so the groups of
a grid compile once.

Layout and storage (:mod:`.group_layout`): runs are arranged in slots ``(S seeds, R
runs per seed)``; a step gathers each seed's batch once and applies the model with the
parameters of all ``R`` runs of that seed (``vmap`` over runs with the batch not
mapped, an outer ``vmap`` over seeds), and each parameter and optimizer slot is stored
as one array ``(S, *shape, R)``. Each run computes exactly the function of the
single-run engine (:func:`experiments.engines.jax_layers.apply` under ``vmap``), so a
run trained in a group equals the run trained alone up to float32 rounding of the
larger kernels.

Dropout keys are those of :class:`~experiments.engines.jax_engine.JaxEngine`:
``fold_in(fold_in(fold_in(PRNGKey(seed), epoch), step), layer index)``, threefry in
partitionable mode.

Every run has an ``active`` flag per epoch: an inactive run (diverged, or ahead of
the others after a resume) is computed but its parameters, state, optimizer state
and step counter are left as they were, and nothing it computes reaches another run.
An epoch with every run active compiles without that masking (with it, XLA copies the
stacked arrays each step: an epoch of the logreg grid takes a fifth longer). The two
programs agree to float32 rounding, not bit for bit: after a run diverges, the others
go on as they would without it up to a last-place difference now and then.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from amsgrad.optax import active_runs, per_run

from experiments import models
from experiments.config.setup_keys import SetupKeys
from experiments.engines import available_memory, eval_bytes, get_engine

from . import jax_layers
from .base import (EngineGroup, check_arrays, initial_arrays, optimizer_shapes,
                   validation_means)
from .group_layout import SlotLayout, slot_params

LAYOUTS = ("shared", "per_run", "loop")
_PROGRAMS = {}  # compiled programs by configuration and argument shapes


def clear_programs():
    """Forget the compiled programs (they are kept for the engines still to come)."""
    _PROGRAMS.clear()


class GroupEngine(EngineGroup):
    """K runs of one model spec, trained together (see the module docstring).

    Parameters
    ----------
    spec : experiments.models.ModelSpec
    dataset : experiments.data.Dataset
    optimizers : list of experiments.optimizers.Optimizer
        One per run, all of one program (:meth:`~experiments.optimizers.Optimizer.program_key`).
    seeds : list of int
        One per run; fixes its initial arrays and, shared by all runs of that seed,
        the data order, flips and dropout masks.
    dropout : bool
        ``False`` turns dropout off in training.
    device : jax.Device, optional
    setup : experiments.config.setup_keys.SetupKeys, optional
        Every run's setup, as :class:`~experiments.engines.base.Engine` takes it.
    compute_dtype : str, optional
        E.g. ``'bfloat16'``: parameters and inputs cast to it for the forward and
        backward pass (float32 weights, loss and update); for speed trials only.
    layout : {'shared', 'per_run', 'loop'}, optional
        'shared' gathers each seed's batch once and maps the runs (above);
        'per_run' gathers a batch for every run and maps everything (for
        comparison); 'loop' steps the runs one after another inside the program
        (``lax.map``). Default: 'loop' for convolutional models on CPU, where XLA's
        grouped convolutions (what 'shared' makes of K runs' convolutions) are slower
        than K plain ones; else 'shared'.
    eval_runs : int, optional
        Runs evaluated per call (bounds validation memory); default: all with
        ``layout='loop'``, else as many as fit in a quarter of the free memory
        (:func:`experiments.engines.eval_bytes`).
    custom_grad : bool, optional
        Convolution gradients as forward convolutions, as the single-run engine
        (default: on CPU only).
    """

    name = "jax"

    def __init__(self, spec, dataset, optimizers, seeds, dropout=True, device=None,
                 setup=None, compute_dtype=None, layout=None, eval_runs=None,
                 custom_grad=None):
        if len(optimizers) != len(seeds) or not seeds:
            raise ValueError(f"need one optimizer per seed, got {len(optimizers)} "
                             f"and {len(seeds)}")
        programs = {o.program_key() for o in optimizers}
        if len(programs) > 1:
            raise ValueError(f"runs of one group must follow one rule and share what it "
                             f"compiles in, got {sorted(programs)}")
        self.family = optimizers[0].family
        device = device or jax.devices()[0]
        convolutional = any(isinstance(l, models.Conv2DLayer) for l in spec.layers)
        if layout is None:
            layout = "loop" if convolutional and device.platform == "cpu" else "shared"
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
        self.spec, self.dataset, self.optimizers = spec, dataset, list(optimizers)
        self.seeds = [int(s) for s in seeds]
        self.setup = setup or SetupKeys()
        problem = get_engine(self.name).problem(self.setup, [o.rule for o in optimizers])
        if problem:
            raise ValueError(problem)
        self.dropout, self.layout = bool(dropout), layout
        self.compute_dtype = None if compute_dtype is None else jnp.dtype(compute_dtype)
        self.device = device
        # XLA's CPU backend fuses a matrix product with its neighbours into one YNNPACK
        # call by default; for the grouped dense models plain dots and loop fusions
        # train an epoch of the logreg grid about 15% faster. A compile option, so a
        # jax without it (0.4.30) just compiles as usual.
        self._compiler_options = ({"xla_cpu_experimental_ynn_fusion_type": ""}
                                  if device.platform == "cpu" and not convolutional else {})
        self.custom_grad = (self.device.platform == "cpu" if custom_grad is None
                            else bool(custom_grad))
        self.slots = SlotLayout(self.seeds)
        self.seed_order = self.slots.seed_order
        self._shapes = {n: tuple(v) for n, v in models.param_shapes(spec).items()}
        self.eval_runs = None if eval_runs is None else int(eval_runs)
        values, self._unused = self.family.group_values(
            [self.optimizers[k].family_values() for k in self.slots.source], self.slots.runs)
        # per-run values as device arrays, arguments of the program; the rest compiled in
        self._static = {k: v for k, v in values.items() if np.ndim(v) == 0}
        self._hyper = {k: jax.device_put(v, device) for k, v in values.items()
                       if k not in self._static}
        self._data = jax_layers.place_dataset(dataset, self.device)
        self._donate = (0,) if self.device.platform != "cpu" else ()
        self.compile_seconds = 0.0
        self.epoch_program = None  # the last epoch's compiled program (memory_analysis())
        self.load([initial_arrays(spec, o, s, self.setup)
                   for o, s in zip(self.optimizers, self.seeds)])

    @property
    def size(self):
        return len(self.seeds)

    def info(self):
        return {**jax_layers.device_info(self.device), "group_size": self.size,
                "group_slots": self.slots.n_slots, "group_seeds": len(self.seed_order)}

    def carry_bytes(self):
        """Bytes of the stacked arrays (parameters, state, optimizer state)."""
        return int(sum(a.size * a.dtype.itemsize
                       for a in jax.tree_util.tree_leaves(self._carry)))

    # ---- arrays ---------------------------------------------------------------------
    def load(self, arrays):
        """Set every run's arrays: ``arrays[k]`` as :meth:`Engine.load` takes them
        (a slot of the rule's state that a run lacks, e.g. AMSGrad's running maximum of
        an Adam run in a group with AMSGrad runs, holds zeros, unused)."""
        if len(arrays) != self.size:
            raise ValueError(f"expected arrays of {self.size} runs, got {len(arrays)}")
        for a, o in zip(arrays, self.optimizers):
            check_arrays(a, self.spec, o)
        params, state, steps = self.slots.pack(arrays, list(self._shapes))
        put = lambda tree: jax.device_put(tree, self.device)  # noqa: E731
        template = self._transform(self._hyper, 0.0).init(params)
        names = self.family.state_arrays(template, self._shapes)
        packed = self.slots.pack_state(arrays, names)  # the step count "t" too
        opt = put(self.family.load_state(template, packed, self._shapes))
        # the optimizer's step counts and the carry's: two buffers (donated apart)
        self._carry = (put(params), put(state), opt, put(steps))

    def dump(self):
        """Every run's arrays, as :meth:`Engine.dump` returns them: a list of K dicts."""
        params, state, opt, t = jax.device_get(self._carry)
        opt = {k: v for k, v in self.family.state_arrays(opt, self._shapes).items()
               if k != "t"}
        return self.slots.unpack(params, state, opt, t,
                                 [list(optimizer_shapes(self.spec, o))[1:]  # after opt:t
                                  for o in self.optimizers])

    def _transform(self, hyper, lr):
        """The rule's transformation of every slot: ``hyper`` its per-run values,
        ``lr`` the learning rates (laid out as the slots' runs)."""
        values = {**self._static, **hyper, "learning_rate": lr}
        return self.family.transform(values, runs=self.slots.runs)

    # ---- compiled pieces ------------------------------------------------------------
    def _layer_options(self):
        return dict(precision=self.setup.precision, custom_grad=self.custom_grad,
                    pool_ties=self.setup.maxpool_tie_gradient)

    def _run_step(self, params, state, x, y, key):
        """One run's gradient on one batch: the single-run engine's function."""
        cast = (lambda tree: jax.tree_util.tree_map(
            lambda a: a.astype(self.compute_dtype), tree)) if self.compute_dtype else None

        def loss_fn(p):
            p_c, x_c = (cast(p), x.astype(self.compute_dtype)) if cast else (p, x)
            probs, new_state = jax_layers.apply(self.spec, p_c, state, x_c, train=True,
                                                key=key if self.dropout else None,
                                                **self._layer_options())
            probs = probs.astype(jnp.float32)
            new_state = {k: v.astype(state[k].dtype) for k, v in new_state.items()}
            loss = jnp.mean(jax_layers.clipped_crossentropy(probs, y))
            return loss, (new_state, jnp.mean(jax_layers.accuracy(probs, y)))

        (loss, (new_state, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        return grads, new_state, loss, acc

    def _grads(self, params, state, x, y, keys):
        """Gradients of every slot (stored as the parameters), and the slots' new state,
        losses and accuracies (slot-major); ``params`` as stored,
        ``x`` (S, B, ...) one batch per seed."""
        n_seeds, width = len(self.seed_order), self.slots.width
        rows = lambda tree: jax.tree_util.tree_map(
            lambda a: a.reshape((n_seeds, width) + a.shape[1:]), tree)
        flat = lambda tree: jax.tree_util.tree_map(
            lambda a: a.reshape((n_seeds * width,) + a.shape[2:]), tree)
        if self.layout == "shared":
            run_axes = {n: len(shape) for n, shape in self._shapes.items()}  # last
            per_seed = jax.vmap(self._run_step, in_axes=(run_axes, 0, None, None, None),
                                out_axes=(run_axes, 0, 0, 0))
            grads, new_state, loss, acc = jax.vmap(per_seed)(params, rows(state), x, y, keys)
            return (grads,) + flat((new_state, loss, acc))
        slot_major = {n: self.slots.slot_major(v, jnp) for n, v in params.items()}
        if self.layout == "loop":  # one run after another, each with its seed's batch
            seed_of = jnp.asarray(np.arange(self.slots.n_slots) // width, jnp.int32)
            out = jax.lax.map(lambda a: self._run_step(a[0], a[1], x[a[2]], y[a[2]],
                                                       keys[a[2]]),
                              (slot_major, state, seed_of))
        else:  # 'per_run': every slot its own copy of its seed's batch
            rep = lambda a: jnp.repeat(a, width, axis=0)
            out = jax.vmap(self._run_step)(slot_major, state, rep(x), rep(y), rep(keys))
        grads = {n: self.slots.stored(g, jnp) for n, g in out[0].items()}
        return (grads,) + out[1:]

    def _step(self, carry, hyper, x, y, lr, active, keys, masked=True):
        params, state, opt, t = carry
        grads, new_state, loss, acc = self._grads(params, state, x, y, keys)
        # the rule, each run's values broadcast along its parameters' run axis
        tx = active_runs(self._transform(hyper, lr.reshape(self.slots.runs)))
        updates, opt = tx.update(grads, opt, params,
                                 active=active.reshape(self.slots.runs) if masked else None)
        params = optax.apply_updates(params, updates)
        state = {k: jnp.where(per_run(active, v), new_state[k], v) if masked else new_state[k]
                 for k, v in state.items()}
        return (params, state, opt, t + active.astype(t.dtype)), loss, acc

    def _epoch(self, carry, hyper, x_train, y_train, indices, flips, lr, active, keys,
               use_flips, masked=True):
        """``indices`` (n_batches, S, B); ``keys`` (S, 2) the seeds' epoch keys."""
        def body(c, xs):
            step, idx, flip = xs
            x = x_train[idx]
            if use_flips:
                x = jnp.where(flip[:, :, None, None, None], x[..., ::-1], x)
            step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, step)
            c, loss, acc = self._step(c, hyper, x, y_train[idx], lr, active, step_keys,
                                      masked)
            return c, (loss, acc)

        steps = jnp.arange(indices.shape[0], dtype=jnp.uint32)
        flips = flips if use_flips else jnp.zeros(indices.shape, bool)
        return jax.lax.scan(body, carry, (steps, indices, flips))

    def _eval_batches(self, params, state, x, y, batch_size):
        """Per-batch, per-slot sums of loss and correct predictions of slots with the
        slot-major ``params`` and ``state`` (as the single-run engine: ``x`` zero-padded
        to whole batches, padded rows masked out)."""

        def one_run(p, s, xb, yb, vb):
            probs, _ = jax_layers.apply(self.spec, p, s, xb, train=False,
                                        **self._layer_options())
            loss = jax_layers.clipped_crossentropy(probs, yb)
            return jnp.sum(loss * vb), jnp.sum(jax_layers.accuracy(probs, yb) * vb)

        def body(_, xs):
            xb, yb, vb = xs
            if self.layout == "loop":
                return None, jax.lax.map(lambda a: one_run(*a, xb, yb, vb), (params, state))
            return None, jax.vmap(one_run, (0, 0, None, None, None))(params, state, xb, yb, vb)

        return jax.lax.scan(body, None, jax_layers.eval_batches(x, y, batch_size))[1]

    # ---- the interface --------------------------------------------------------------
    def _epoch_args(self, epoch, lr, active, plans):
        put = lambda a: jax.device_put(a, self.device)
        lr = np.asarray(lr, np.float64)
        active = np.asarray(active, bool)
        if lr.shape != (self.size,) or active.shape != (self.size,):
            raise ValueError(f"lr and active need one value per run ({self.size})")
        # a padding slot trains as a copy of its source run: no masking for it
        slot_lr = lr[self.slots.source].astype(np.float32)
        slot_active = active[self.slots.source]
        plans = [plans[s] for s in self.seed_order]
        indices = np.stack([np.asarray(i, np.int32) for i, _ in plans], axis=1)
        use_flips = plans[0][1] is not None
        flips = np.stack([np.asarray(f, bool) for _, f in plans], axis=1) if use_flips else None
        keys = np.stack([np.asarray(jax.random.fold_in(jax.random.PRNGKey(s), epoch))
                         for s in self.seed_order])
        args = (self._carry, self._hyper, self._data["x_train"], self._data["y_train"],
                put(indices), None if flips is None else put(flips), put(slot_lr),
                put(slot_active), put(keys))
        return args, use_flips, not slot_active.all()

    def _program(self, name, args, **static):
        """The compiled ``self._<name>`` for ``args``, shared by every engine of the same
        configuration (the groups of a grid compile once); compile time is added to
        :attr:`compile_seconds`."""
        leaves = tuple((a.shape, str(a.dtype)) for a in jax.tree_util.tree_leaves(args))
        key = (name, self.spec, self.layout, self.dropout, self.setup,
               str(self.compute_dtype), self.custom_grad, self.family.name,
               tuple(sorted((k, repr(v)) for k, v in self._static.items())), self._unused,
               len(self.seed_order), self.slots.width, self.device, tuple(sorted(static.items())),
               leaves, jax.config.jax_threefry_partitionable)
        if key not in _PROGRAMS:
            began = time.perf_counter()
            donate = self._donate if name == "epoch" else ()
            fn = jax.jit(getattr(self, f"_{name}"), static_argnames=tuple(static),
                         donate_argnums=donate)
            _PROGRAMS[key] = jax_layers.compile_with(fn.lower(*args, **static),
                                                     self._compiler_options)
            self.compile_seconds += time.perf_counter() - began
        return _PROGRAMS[key]

    @jax_layers.partitionable
    def train_epoch(self, epoch, lr, active, plans):
        """Train one epoch of every active run.

        Parameters
        ----------
        epoch : int
            0-based; with each seed it fixes the dropout masks.
        lr : array (K,)
            Each run's learning rate for this epoch.
        active : bool array (K,)
            Runs to train; the others keep their arrays unchanged.
        plans : dict seed -> (indices, flips)
            ``data.epoch_batches(seed, epoch, ...)`` of every seed of the group.

        Returns
        -------
        losses, accs : float arrays (K,)
            Each run's mean training loss and accuracy over the epoch's batches
            (meaningless for inactive runs).
        """
        args, use_flips, masked = self._epoch_args(epoch, lr, active, plans)
        self.epoch_program = self._program("epoch", args, use_flips=use_flips, masked=masked)
        self._carry, (losses, accs) = self.epoch_program(*args)
        losses, accs = jax.device_get((losses, accs))  # (n_batches, slots)
        # per run, the single-run engine's float64 mean over its batches
        mean = lambda a: np.mean(np.ascontiguousarray(a.T[self.slots.first_slot]), axis=1,
                                 dtype=np.float64)
        return mean(losses), mean(accs)

    def evaluate(self, batch_size=1024):
        """``(val_losses, val_accs)``, arrays (K,): deterministic mode over the whole
        validation set, as :meth:`Engine.evaluate` for each run."""
        params, state = self._carry[:2]
        x, y = self._data["x_val"], self._data["y_val"]
        chunk_size = self.eval_runs
        if chunk_size is None:
            chunk_size = self.slots.n_slots
            if self.layout != "loop":
                room = available_memory(self.device) / 4
                chunk_size = max(1, min(chunk_size, int(room // eval_bytes(
                    self.spec, min(int(batch_size), x.shape[0])))))
        loss_sums, correct = [], []
        for a in range(0, self.slots.n_slots, chunk_size):
            b = min(a + chunk_size, self.slots.n_slots)
            args = (slot_params(params, a, b, self.slots.width),
                    jax.tree_util.tree_map(lambda v: v[a:b], state), x, y)
            ls, cs = jax.device_get(self._program("eval_batches", args,
                                                  batch_size=int(batch_size))(*args))
            loss_sums.append(ls)
            correct.append(cs)
        first = self.slots.first_slot
        mean = lambda parts: validation_means(np.concatenate(parts, axis=1).T[first],
                                              x.shape[0], int(batch_size),
                                              self.setup.val_average)
        return mean(loss_sums), mean(correct)

