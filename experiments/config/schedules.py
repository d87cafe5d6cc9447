"""Learning-rate schedules: the rate in each epoch of a training run, and the
synthetic problem's per-step decay, in one place.

A grid config names its schedule with ``lr_schedule``, as a name or as a mapping of
the name and its parameters::

    lr_schedule: linear                              # the post's: lr0 * (1 - e / epochs)
    lr_schedule: constant                            # lr0
    lr_schedule: {name: cosine, final: 0.01}         # half a cosine from lr0 to final * lr0
    lr_schedule: {name: step, every: 50, factor: 0.1}  # times factor after every 50 epochs
    lr_schedule: {name: step, at: [100, 130]}        # ... after epochs 100 and 130
    lr_schedule: inverse_sqrt                        # lr0 / sqrt(e + 1)

The rate changes once per epoch: epoch ``e`` (0-based) trains at ``schedule(e)``, and
the curves' ``lr`` column is that rate. ``linear`` is the post's rule, computed as it
always was, ``lr0 * (1 - e / epochs)`` in float64 on the host (the last epoch trains at
``lr0 / epochs``). ``cosine`` and ``step`` are optax's schedule functions
(:func:`optax.cosine_decay_schedule` with ``alpha = final``,
:func:`optax.piecewise_constant_schedule` at ``every``, ``2 every``, ... or ``at``),
evaluated in float64 on the CPU, so a run's rates are the same on every device and jax
version. ``inverse_sqrt`` is the ``alpha / sqrt(t)`` of the AMSGrad paper's theorems (and
AdamNC's) counted in epochs, ``t = e + 1``.

:func:`normalize` normalises a config value: a schedule without parameters is its name
(``linear``: so configs written before schedules had parameters keep their run ids and
config hashes), any other a mapping with every parameter filled in.

References
----------
.. [1] Loshchilov, I. and Hutter, F. (2017). SGDR: Stochastic gradient descent with warm
   restarts. ICLR. (The cosine schedule, without restarts.)
.. [2] Reddi, S. J., Kale, S. and Kumar, S. (2018). On the convergence of Adam and
   beyond. ICLR. (The ``lr / sqrt(t)`` decay of the synthetic problem.)
"""
import functools
import json

import numpy as np

from experiments.config.checks import Bad, did_you_mean, integer, list_of, number, shown

#: Schedule name -> its parameters and their defaults (None: no default; step takes
#: either ``every`` or ``at``).
SCHEDULES = {
    "linear": {},
    "constant": {},
    "cosine": {"final": 0.0},
    "step": {"factor": 0.1, "every": None, "at": None},
    "inverse_sqrt": {},
}
#: The synthetic problem's per-step decays (``lr_decay``), of the step count t >= 1.
STEP_DECAYS = ("constant", "sqrt")

__all__ = ["SCHEDULES", "STEP_DECAYS", "normalize", "example_with", "schedule", "rates",
           "learning_rate", "step_decay"]


#: Each schedule parameter's check.
_CHECKS = {"final": number(0, 1), "factor": number(0, 1, low_open=True), "every": integer(1),
           "at": list_of(integer(1))}


def _param(name, key, value):
    """``value`` of parameter ``key`` of schedule ``name``, checked."""
    try:
        value = _CHECKS[key](value)
    except Bad as e:
        raise ValueError(f"{name}'s {key!r}: {e}") from None
    if key == "at" and value != sorted(value):
        raise ValueError(f"{name}'s 'at': expected increasing epochs, got {value}")
    return value


def normalize(value):
    """A config's ``lr_schedule`` normalised: the name of a schedule without parameters
    (``'linear'``, ``'constant'``, ``'inverse_sqrt'``), else ``{'name': ..., <every parameter>}``.

    Raises ``ValueError`` with one line saying what is wrong (the config adds the key).
    """
    given = dict(value) if isinstance(value, dict) else {"name": value}
    name = given.pop("name", None)
    if not isinstance(name, str) or name not in SCHEDULES:
        hint = did_you_mean(name, SCHEDULES) if isinstance(name, str) else ""
        what = "missing 'name'" if name is None else f"unknown schedule {shown(name)}{hint}"
        raise ValueError(f"{what}; choose from {', '.join(SCHEDULES)} (as a name, or "
                         f"{{name: step, every: 50, factor: 0.1}})")
    params = SCHEDULES[name]
    for key in given:
        if key not in params:
            takes = f"takes {', '.join(params)}" if params else "takes no parameters"
            raise ValueError(f"{name} {takes}, not {key!r}{did_you_mean(key, params)}")
    if not params:
        return name
    out = {"name": name}  # every parameter, but the alternatives not given (step's)
    for key, default in params.items():
        value = given.get(key, default)
        if value is not None:
            out[key] = _param(name, key, value)
    if name == "step" and ("every" in out) == ("at" in out):
        raise ValueError("step needs either every (epochs between decays) or at (the "
                         "epochs after which to decay), e.g. {name: step, every: 50}")
    return out


def example_with(key, value):
    """A schedule mapping that sets parameter ``key`` to ``value`` and is valid as it
    stands, as YAML flow text (``{name: step, every: 50, factor: 0.5}``), for a hint; None
    if no schedule takes ``key`` or ``value`` is not one of its values."""
    for name, params in SCHEDULES.items():
        if key in params:
            example = {"name": name, key: value}
            if name == "step" and key not in ("every", "at"):
                example = {"name": name, "every": 50, key: value}  # step needs one of them
            try:
                normalize(example)
            except ValueError:
                return None
            return _flow(example)
    return None


def _flow(mapping):
    """``{name: step, every: 50}``: a flat mapping as YAML flow text."""
    return "{" + ", ".join(f"{k}: {json.dumps(v) if not isinstance(v, str) else v}"
                           for k, v in mapping.items()) + "}"


def schedule(spec, lr0, n_epochs):
    """The rate of ``spec`` (as :func:`normalize` returns it) as a function of the 0-based
    epoch, an optax-style schedule ``count -> rate`` (int, numpy or jax arrays)."""
    name = spec if isinstance(spec, str) else spec["name"]
    if name == "linear":
        return lambda epoch: lr0 * (1.0 - epoch / n_epochs)
    if name == "constant":
        return lambda epoch: lr0 + 0.0 * epoch
    if name == "inverse_sqrt":
        return lambda epoch: lr0 / np.sqrt(1.0 + epoch)
    import optax
    if name == "cosine":
        return optax.cosine_decay_schedule(lr0, n_epochs, alpha=spec["final"])
    if name == "step":  # every: at every, 2 every, ... (so every 50 is at [50, 100])
        at = spec.get("at") or range(spec["every"], n_epochs, spec["every"])
        return optax.piecewise_constant_schedule(lr0, {e: spec["factor"] for e in at})
    raise ValueError(f"unknown lr_schedule {name!r}; choose from {', '.join(SCHEDULES)}")


def rates(spec, lr0, n_epochs):
    """The rate of every epoch of ``n_epochs``: float64 array ``(n_epochs,)``."""
    return _table(normalize(spec), lr0, n_epochs).copy()


def learning_rate(lr0, epoch, n_epochs, schedule="linear"):
    """The learning rate during epoch ``epoch`` (0-based) of ``n_epochs``.

    ``schedule`` is a config's ``lr_schedule`` (a name or a mapping, see
    :func:`normalize`); ``'linear'`` gives ``lr0 * (1 - epoch / n_epochs)``.
    """
    if not 0 <= epoch < n_epochs:
        raise ValueError(f"epoch {epoch} is not one of the {n_epochs} epochs")
    return float(_table(normalize(schedule), lr0, n_epochs)[epoch])


def _table(spec, lr0, n_epochs):
    return _evaluated(json.dumps(spec, sort_keys=True), float(lr0), int(n_epochs))


@functools.lru_cache(maxsize=256)  # a grid's runs share a few (schedule, lr0, epochs)
def _evaluated(key, lr0, n_epochs):
    spec = json.loads(key)
    fn, epochs = schedule(spec, lr0, n_epochs), np.arange(n_epochs)
    if isinstance(spec, str):  # linear, constant: numpy, no jax
        table = np.asarray(fn(epochs), dtype=np.float64)
    else:
        import jax
        with _x64(), jax.default_device(jax.devices("cpu")[0]):
            table = np.asarray(fn(epochs), dtype=np.float64)
    table.flags.writeable = False
    return table


def _x64():
    """Context in which JAX computes in float64 (switched on here only)."""
    import jax
    if hasattr(jax, "enable_x64"):  # jax >= 0.5
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # jax 0.4.x
    return enable_x64()


def step_decay(name, lr0):
    """The synthetic problem's rate at step ``t`` (1-based, a jax array):
    ``'constant'``: ``lr0``; ``'sqrt'``: ``lr0 / sqrt(t)`` (the paper's theory)."""
    if name == "constant":
        return lambda t: lr0
    if name == "sqrt":
        import jax.numpy as jnp
        return lambda t: lr0 / jnp.sqrt(t)
    raise ValueError(f"unknown lr_decay {name!r}; choose from {', '.join(STEP_DECAYS)}")
