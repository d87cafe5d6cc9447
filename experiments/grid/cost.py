"""What a grid will cost, said before it trains: the plan's ``cost:`` and ``time:`` lines
(printed by :func:`experiments.grid.runner.run_grid` under the plan's line, in a dry run
too).

FLOPs are counted as :func:`experiments.models.epoch_flops` counts them: 2 per
multiply-add of the convolution and dense layers, nothing else (not the activations,
pooling, normalisation, loss or the optimizer's update); a training example costs the forward pass, the weight gradients and the input gradients
of every weighted layer but the first (about 3x the forward pass); validation is the
forward pass over the validation set in whole batches, every epoch. Only the epochs
left to train are counted.

The time is for the device this process would train on (JAX's first device; a CPU for
the Theano engine): from the rate ``scripts/benchmark.py`` measured there for the
engine, model and precision (:mod:`experiments.engines.devices`), "about"; else from
the device's peak at the precision, "at least" (no run is faster than the peak);
else none.
"""
from experiments import models
from experiments.config import run_keys
from experiments.data.registry import get_dataset
from experiments.engines import devices, get_engine

__all__ = ["grid_flops", "local_device", "estimate", "cost_lines"]


def grid_flops(runs, epochs_left):
    """``(training, validation)`` FLOPs of ``epochs_left[run_id]`` more epochs of each
    of ``runs``, or None where the dataset does not state its size."""
    train = val = 0
    for run in runs:
        sizes = get_dataset(run["dataset"]).sizes
        if sizes is None:
            return None
        n_train, n_val = (min(n, subset or n) for n, subset in
                          zip(sizes, (run.get("train_subset"), run.get("val_subset"))))
        spec = models.get_model(run["model"], run["dataset"])
        t, v = models.epoch_flops(spec, n_train, n_val, int(run["batch_size"]),
                                  int(run["val_batch_size"]))
        train += t * epochs_left[run["run_id"]]
        val += v * epochs_left[run["run_id"]]
    return train, val


def local_device(engine):
    """The :func:`~experiments.engines.devices.device_name` of the device ``engine``
    trains on in this process: JAX's first device for JAX, else this host's CPU."""
    try:
        library = get_engine(engine).abilities.library
    except ValueError:  # an unknown engine is refused later, with its own line
        library = None
    if library == "jax":
        import jax
        return devices.device_name(jax.devices()[0])
    return devices.device_name(None)


def _flops(n):
    for exponent, unit in ((18, "EFLOP"), (15, "PFLOP"), (12, "TFLOP"), (9, "GFLOP")):
        if n >= 10 ** exponent:
            return f"{n / 10 ** exponent:.3g} {unit}"
    return f"{n / 1e6:.3g} MFLOP"


def _hours(seconds):
    if seconds >= 48 * 3600:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.2g} s"


def estimate(flops, device, engine, model, precision, rates=None, config="CONFIG"):
    """The time of ``flops`` on ``device`` in words: from a measured rate (``rates``:
    the rates file, default :func:`~experiments.engines.devices.rates_path`), else
    from the peak, else none."""
    measured = devices.recorded_rate(device, engine, model, precision, rates)
    if measured and measured.get("flops_per_s", 0) > 0:
        rate = float(measured["flops_per_s"])
        k = f", {measured['group_size']} runs per program" if measured.get("group_size") else ""
        return (f"about {_hours(flops / rate)} at {rate / 1e12:.3g} TFLOP/s (measured by "
                f"{measured.get('by', 'a benchmark')} on {measured.get('measured', '?')}{k})")
    top = devices.peak(device, precision)
    if top:
        return (f"at least {_hours(flops / top[0])} at the {top[1]} peak of about "
                f"{top[0] / 1e12:.3g} TFLOP/s (no rate measured here yet)")
    return (f"no estimate: no known peak of this device at this precision and no rate "
            f"measured here (scripts/benchmark.py grid --config {config} measures one)")


def cost_lines(the_plan, engine, device=None, rates=None):
    """The ``cost:`` and ``time:`` lines of ``the_plan``
    (:class:`experiments.grid.plan.Plan`) trained by ``engine`` on ``device`` (a device
    name; None: not known here), as one string."""
    todo = the_plan.todo
    if not todo:
        return "cost: nothing left to train"
    left = {r["run_id"]: max(int(r["epochs"]) - the_plan.epochs_done[r["run_id"]], 0)
            for r in todo}
    counts = set(left.values())
    what = (f"{len(todo)} run{'s' if len(todo) != 1 else ''} x {counts.pop()} epochs"
            if len(counts) == 1 else f"{len(todo)} runs, {sum(left.values())} epochs")
    flops = grid_flops(todo, left)
    if flops is None:
        return f"cost: {what}: unknown (dataset {todo[0]['dataset']!r} states no size)"
    total = sum(flops)
    precision = run_keys.setup_of(the_plan.config.fixed).precision
    head = (f"cost: {what}: {_flops(total)} (training {_flops(flops[0])}, validation "
            f"{_flops(flops[1])}; 2 FLOP per multiply-add, training about 3x forward)")
    if device is None:
        return f"{head}\ntime: no estimate here (the executor's workers choose their devices)"
    words = estimate(total, device, engine, todo[0]["model"], precision, rates,
                     the_plan.config.path or "CONFIG")
    return f"{head}\ntime: {device}, engine {engine}, precision {precision}: {words}"
