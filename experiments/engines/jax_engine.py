"""The JAX engine: a model spec trained with a whole-epoch compiled loop.

One epoch is one call of one compiled function: the training set lives on the device
(copied once), the host sends only the epoch's ``(n_batches, batch)`` index plan and
flip mask, and ``lax.scan`` runs every step (gather, flip, forward, backward, update)
without returning to Python. Validation is one compiled call too.

The update rule is the run's optimizer's optax transformation (its registry entry:
:mod:`experiments.optimizers`; for the library's rules :mod:`amsgrad.optax`), built
inside the compiled step with the learning rate as a traced argument, so changing the
learning rate every epoch does not recompile.

Dropout keys: ``fold_in(fold_in(PRNGKey(seed), epoch), step)`` then ``fold_in(.., i)``
for the dropout layer at position ``i`` of the spec; they depend on ``(seed, epoch,
step)`` only, so a resumed run draws the same masks. Keys are drawn with threefry's
partitionable mode (the default from jax 0.5 on, switched on here for older jax), so
masks are the same on every supported jax version.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import models

from . import jax_layers
from .base import (Engine, check_arrays, initial_arrays, optimizer_shapes, split_arrays,
                   validation_means)


class JaxEngine(Engine):
    """See :class:`experiments.engines.base.Engine`.

    Extra parameters
    ----------------
    device : jax.Device, optional
        Where to keep the data and train (default: JAX's default device).
    custom_grad : bool, optional
        Convolution gradients as NHWC forward convolutions
        (:func:`jax_layers.conv_nhwc`); default: on CPU only, where XLA's own are
        slow inside the compiled epoch loop.
    """

    name = "jax"

    def __init__(self, spec, dataset, optimizer, seed, dropout=True, setup=None, device=None,
                 custom_grad=None):
        super().__init__(spec, dataset, optimizer, seed, dropout, setup)
        self.device = device or jax.devices()[0]
        self.custom_grad = (self.device.platform == "cpu" if custom_grad is None
                            else bool(custom_grad))
        self._opt_names = list(optimizer_shapes(spec, optimizer))
        self._param_names = list(models.param_shapes(spec))
        self._data = None if dataset is None else jax_layers.place_dataset(dataset, self.device)
        # The old carry's buffers are reused for the new one (donated).
        donate = (0,)
        self._epoch_fn = jax.jit(self._epoch, static_argnames=("use_flips",),
                                 donate_argnums=donate)
        self._steps_fn = jax.jit(self._steps, donate_argnums=donate)
        self._eval_fn = jax.jit(self._eval_batches, static_argnames=("batch_size",))
        self._forward_fn = jax.jit(self._forward, static_argnames=("deterministic",))
        self.load(initial_arrays(spec, optimizer, seed, self.setup))

    def info(self):
        return jax_layers.device_info(self.device)

    # ---- arrays ---------------------------------------------------------------------
    def load(self, arrays):
        check_arrays(arrays, self.spec, self.optimizer)
        params, state, opt = split_arrays(arrays)
        put = lambda a: jax.device_put(np.array(a, np.float32), self.device)  # own copy
        params = {k: put(v) for k, v in params.items()}
        state = {k: put(v) for k, v in state.items()}
        # the rule's state (its zeros) with the checkpoint's arrays in place; its step
        # count and the carry's t are separate buffers (a donated carry may not hold one
        # buffer twice)
        template = self.optimizer.transform(0.0).init(params)
        opt_state = jax.device_put(self.optimizer.family.load_state(template, opt,
                                                                    self._param_names),
                                   self.device)
        t = jax.device_put(np.array(opt["t"], np.int32), self.device)
        self._carry = (params, state, opt_state, t)

    def dump(self):
        params, state, opt_state, t = jax.device_get(self._carry)
        out = {f"param:{k}": np.array(v) for k, v in params.items()}
        out.update((f"state:{k}", np.array(v)) for k, v in state.items())
        out["opt:t"] = np.asarray(t, np.int64)
        arrays = self.optimizer.family.state_arrays(opt_state, self._param_names)
        out.update((f"opt:{k}", np.array(v)) for k, v in arrays.items() if k != "t")
        assert sorted(k for k in out if k.startswith("opt:")) == sorted(self._opt_names)
        return out

    # ---- compiled pieces ------------------------------------------------------------
    def _apply(self, params, state, x, train, key=None):
        return jax_layers.apply(self.spec, params, state, x, train=train,
                                key=key if self.dropout else None,
                                precision=self.setup.precision, custom_grad=self.custom_grad,
                                pool_ties=self.setup.maxpool_tie_gradient)

    def _step(self, carry, x, y, lr, key):
        """One update on the batch ``(x, y)``; returns the new carry, loss and accuracy."""
        params, state, opt_state, t = carry

        def loss_fn(p):
            probs, new_state = self._apply(p, state, x, train=True, key=key)
            loss = jnp.mean(jax_layers.clipped_crossentropy(probs, y))
            return loss, (new_state, jnp.mean(jax_layers.accuracy(probs, y)))

        (loss, (state, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        tx = self.optimizer.transform(lr)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, state, opt_state, t + 1), loss, acc

    def _epoch(self, carry, x_train, y_train, indices, flips, lr, key, use_flips):
        def body(c, xs):
            step, idx, flip = xs
            x = x_train[idx]
            if use_flips:  # mirror the width axis of the flagged images
                x = jnp.where(flip[:, None, None, None], x[..., ::-1], x)
            c, loss, acc = self._step(c, x, y_train[idx], lr, jax.random.fold_in(key, step))
            return c, (loss, acc)

        steps = jnp.arange(indices.shape[0], dtype=jnp.uint32)
        flips = flips if use_flips else jnp.zeros(indices.shape, bool)
        carry, (losses, accs) = jax.lax.scan(body, carry, (steps, indices, flips))
        return carry, losses, accs

    def _steps(self, carry, x_batches, y_batches, lr, key):
        def body(c, xs):
            step, x, y = xs
            c, loss, _ = self._step(c, x, y, lr, jax.random.fold_in(key, step))
            return c, loss

        steps = jnp.arange(x_batches.shape[0], dtype=jnp.uint32)
        return jax.lax.scan(body, carry, (steps, x_batches, y_batches))

    def _eval_batches(self, params, state, x, y, batch_size):
        """Per-batch sums of loss and correct predictions; ``x`` is zero-padded to a
        multiple of ``batch_size`` and padded rows are masked out of the sums."""

        def body(_, xs):
            xb, yb, vb = xs
            probs, _ = self._apply(params, state, xb, train=False)
            loss = jax_layers.clipped_crossentropy(probs, yb)
            return None, (jnp.sum(loss * vb), jnp.sum(jax_layers.accuracy(probs, yb) * vb))

        return jax.lax.scan(body, None, jax_layers.eval_batches(x, y, batch_size))[1]

    def _forward(self, params, state, x, key, deterministic):
        probs, _ = self._apply(params, state, x, train=not deterministic, key=key)
        return probs

    def _epoch_key(self, epoch):
        return jax.random.fold_in(jax.random.PRNGKey(self.seed), epoch)

    # ---- the interface --------------------------------------------------------------
    @jax_layers.partitionable
    def train_epoch(self, epoch, lr, indices, flips=None):
        if self._data is None:
            raise RuntimeError("this engine was built without a dataset")
        indices = np.asarray(indices, np.int32)
        use_flips = flips is not None
        flips = np.asarray(flips, bool) if use_flips else None
        self._carry, losses, accs = self._epoch_fn(
            self._carry, self._data["x_train"], self._data["y_train"], indices, flips,
            np.float32(lr), self._epoch_key(epoch), use_flips=use_flips)
        losses, accs = jax.device_get((losses, accs))
        return float(np.mean(losses, dtype=np.float64)), float(np.mean(accs, dtype=np.float64))

    def evaluate(self, batch_size=1024):
        if self._data is None:
            raise RuntimeError("this engine was built without a dataset")
        params, state = self._carry[:2]
        x, y = self._data["x_val"], self._data["y_val"]
        loss_sums, correct = jax.device_get(
            self._eval_fn(params, state, x, y, batch_size=int(batch_size)))
        mean = lambda sums: float(validation_means(sums, x.shape[0], int(batch_size),
                                                   self.setup.val_average))
        return mean(loss_sums), mean(correct)

    @jax_layers.partitionable
    def forward(self, x, deterministic=True):
        params, state = self._carry[:2]
        probs = self._forward_fn(params, state, np.asarray(x, np.float32),
                                 self._epoch_key(0), deterministic=bool(deterministic))
        return np.asarray(probs)

    @jax_layers.partitionable
    def train_steps(self, x_batches, y_batches, lr):
        self._carry, losses = self._steps_fn(
            self._carry, np.asarray(x_batches, np.float32), np.asarray(y_batches, np.int32),
            np.float32(lr), self._epoch_key(0))
        return np.asarray(losses)
