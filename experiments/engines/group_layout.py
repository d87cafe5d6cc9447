"""How a group of runs is laid out in the grouped JAX engine's arrays.

Layout: runs are arranged in slots ``(S seeds, R runs per seed)``. Runs of one seed
see the same data (``data.epoch_batches(seed, epoch)``) and the same dropout masks, so
a step gathers each seed's batch once and applies the model with the parameters of
all ``R`` runs of that seed: ``vmap`` over runs with the batch *not* mapped, which
turns the first layer of all ``R`` runs into one matrix product or convolution with
``R`` times the outputs; an outer ``vmap`` maps the seeds. A seed with fewer runs than
``R`` is padded with copies of its first run (trained, never read back). Each run
computes exactly the function of the single-run engine
(:func:`experiments.engines.jax_layers.apply` under ``vmap``), so a run trained in a
group equals the run trained alone up to float32 rounding of the larger kernels.

Storage: each parameter and optimizer slot is one array ``(S, *shape, R)``, a seed's
runs as the minor axis. A weight matrix ``(784, 10)`` of ``R`` runs is then the
contiguous ``(784, 10 R)`` that the shared-batch matrix product takes, and the
optimizer update runs along a long contiguous axis with each run's hyperparameters
broadcast as ``(S, 1, ..., 1, R)``, which XLA's CPU loops vectorize. (Run-major
``(S R, n_params)`` rows cost a transpose of the weights and of their gradient each
step; runs before the last axis, ``(784, R 10)``, spare the gradient's transpose but
the update no longer vectorizes. On the logreg grid an epoch takes 1.3x and 1.06x as
long.) Batch-norm state, step counters and everything else per run are slot-major:
slot ``j`` is run ``j % R`` of seed ``j // R``.
"""
import functools
from collections import OrderedDict

import jax
import numpy as np

__all__ = ["slot_layout", "SlotLayout", "slot_params"]


def slot_layout(seeds):
    """``(seed order, R, slot_run)``: the distinct seeds in order of first appearance,
    runs per seed slot row ``R`` (the most runs of any seed), and for each of the
    ``S * R`` slots the index of its run, or -1 for a padding slot."""
    order = list(OrderedDict.fromkeys(int(s) for s in seeds))
    members = {s: [k for k, t in enumerate(seeds) if int(t) == s] for s in order}
    width = max(len(m) for m in members.values())
    slot_run = [m[r] if r < len(m) else -1 for s in order for m in [members[s]]
                for r in range(width)]
    return order, width, np.asarray(slot_run, np.int64)


class SlotLayout:
    """The slots of runs with ``seeds`` (one per run), and the conversions between
    slot-major rows ``(S R, *shape)`` and stored arrays ``(S, *shape, R)``.

    Attributes: ``seed_order``, ``width`` (``R``), ``slot_run`` (run of each slot, -1
    for padding), ``n_slots``, ``runs`` (``(S, R)``, the optimizer's run layout),
    ``source`` (the run each slot copies: a padding slot copies the first run of its
    seed, and is never active), ``first_slot`` (each run's slot).
    """

    def __init__(self, seeds):
        seeds = [int(s) for s in seeds]
        self.seed_order, self.width, self.slot_run = slot_layout(seeds)
        self.n_slots = len(self.slot_run)
        self.runs = (len(self.seed_order), self.width)
        first = {s: seeds.index(s) for s in self.seed_order}
        self.source = np.array([k if k >= 0 else first[self.seed_order[j // self.width]]
                                for j, k in enumerate(self.slot_run)])
        self.first_slot = np.array([np.flatnonzero(self.slot_run == k)[0]
                                    for k in range(len(seeds))])

    def stored(self, rows, xp=np):
        """Slot-major ``(S R, *shape)`` -> stored ``(S, *shape, R)``."""
        rows = rows.reshape(self.runs + rows.shape[1:])
        return xp.moveaxis(rows, 1, -1)

    def slot_major(self, stored, xp=np):
        """Stored ``(S, *shape, R)`` -> slot-major ``(S R, *shape)``."""
        return xp.moveaxis(stored, -1, 1).reshape((self.n_slots,) + stored.shape[1:-1])

    def pack(self, arrays, param_names):
        """Every run's checkpoint arrays (:meth:`~experiments.engines.base.Engine.dump`
        form, one dict per run) as the group holds them, on the host: ``(params, state,
        steps)``; parameters stored, batch-norm state and step counts (int32)
        slot-major."""
        src = [arrays[k] for k in self.source]
        params = {n: np.ascontiguousarray(self.stored(np.stack(
            [np.asarray(a[f"param:{n}"], np.float32) for a in src]))) for n in param_names}
        state = {k[6:]: np.stack([np.asarray(a[k], np.float32) for a in src])
                 for k in src[0] if k.startswith("state:")}
        return params, state, np.asarray([a["opt:t"] for a in src], np.int32)

    def pack_state(self, arrays, template):
        """Every run's optimizer state (``opt:<name>`` of its checkpoint) stored as the
        group's ``template`` (``{name: stored array}``) holds it; a run without
        ``name`` (an Adam run's AMSGrad maximum) gets zeros there."""
        src = [arrays[k] for k in self.source]

        def rows(name, like):
            shape, dtype = like.shape[1:-1], like.dtype  # one run's shape
            return np.stack([np.asarray(a.get(f"opt:{name}", np.zeros(shape, dtype)), dtype)
                             for a in src])
        return {n: np.ascontiguousarray(self.stored(rows(n, like)))
                for n, like in template.items()}

    def unpack(self, params, state, opt, steps, opt_names):
        """The inverse of :meth:`pack` and :meth:`pack_state` for each run: a list of
        checkpoint dicts, run ``k`` with the optimizer arrays ``opt_names[k]``
        (``opt:<name>``; ``opt`` holds them stored by name)."""
        slot_major = lambda tree: {n: self.slot_major(v) for n, v in tree.items()}  # noqa
        params, opt, out = slot_major(params), slot_major(opt), []
        for k, names in enumerate(opt_names):
            j = self.first_slot[k]
            a = OrderedDict((f"param:{n}", np.array(v[j])) for n, v in params.items())
            a.update((f"state:{n}", np.array(v[j])) for n, v in state.items())
            a["opt:t"] = np.asarray(steps[j], np.int64)
            a.update((name, np.array(opt[name[len("opt:"):]][j])) for name in names)
            out.append(a)
        return out


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def slot_params(params, begin, end, width):
    """The parameters ``{name: (end - begin, *shape)}`` of slots ``begin:end``, from
    the stored ``{name: (S, *shape, R)}`` (a copy: evaluation maps slots)."""
    slots = np.arange(begin, end)
    return {n: v[slots // width, ..., slots % width] for n, v in params.items()}

