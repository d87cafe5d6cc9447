"""The synthetic convex problem of the AMSGrad paper (Reddi et al., 2018, section 5).

One scalar ``x`` in ``[-1, 1]`` starts at 0 and is clipped back into the interval after
every step. The loss is linear, so its gradient does not depend on ``x``:

- ``online``: ``f_t(x) = 1010 x`` if ``t mod 101 == 1``, else ``-10 x``;
- ``stochastic``: ``1010 x`` with probability 0.01, else ``-10 x``, drawn afresh every step.

The optimum is ``x = -1``. With lr 0.001, beta1 0.9, beta2 0.99 and no bias correction
Adam drifts to ``+1`` while AMSGrad moves towards ``-1``.

Rules: ``adam`` and ``amsgrad`` are the experiment's (Lasagne's) rules; ``adam_pytorch``,
``amsgrad_pytorch``, ``adam_optax`` and ``amsgrad_optax`` are the same rules as PyTorch
and optax apply them (:data:`amsgrad.rules.VARIANTS`, ``docs/variants.md``). With bias
correction off, a rule's variants coincide.

The original ran 9 million steps per optimizer, one Python call per step. Here every
(problem, rule) pair is one lane of a vector and all lanes advance together in one
compiled ``lax.scan``: an outer scan over recorded points, an inner (unrolled) scan over
the steps between them, so trajectories are decimated on the device. The step math is
:func:`amsgrad.rules.adam_step`, the ``amsgrad`` switch a boolean per lane, called once
per variant present (a lane takes its variant's result).

The stochastic draws come from numpy, host-side, from ``np.random.default_rng(seed)``
(see :func:`stochastic_draws`), so they are the same for every jax version, and Adam
and AMSGrad see the same draws.
"""
import contextlib
import csv
import functools
import io
import itertools
import numbers
import os
import time
from typing import NamedTuple

import numpy as np

from amsgrad import rules as _rules
from experiments.config import schedules

PROBLEMS = ("online", "stochastic")
#: ``adam``/``amsgrad``: the experiment's variant; ``<rule>_<variant>``: another library's.
RULES = ("adam", "amsgrad") + tuple(f"{rule}_{variant}" for variant in _rules.VARIANTS[1:]
                                    for rule in ("adam", "amsgrad"))
LR_DECAYS = schedules.STEP_DECAYS
DTYPES = ("float32", "float64")
#: Gradients of the two linear losses, and the large gradient's period / probability.
LARGE_GRAD, SMALL_GRAD, PERIOD, PROBABILITY = 1010.0, -10.0, 101, 0.01
#: The config keys of a synthetic run and their defaults (the paper's setting).
DEFAULTS = dict(problems=list(PROBLEMS), rules=["adam", "amsgrad"], steps=9_000_000,
                learning_rate=0.001, beta1=0.9, beta2=0.99, epsilon=1e-8,
                bias_correction=False, lr_decay="constant", seed=0, record_every=1000,
                dtype="float32")

__all__ = ["PROBLEMS", "RULES", "DEFAULTS", "Trajectories", "check_config", "rule_of",
           "stochastic_draws", "make_step", "compile_loop", "simulate", "run_synthetic",
           "write_trajectories", "read_trajectories", "precision"]


class Trajectories(NamedTuple):
    """Recorded x of every lane, and seconds spent compiling (0 if cached) and running
    (drawing the stochastic steps and the loop)."""
    steps: np.ndarray   # (R,) int64, the step after which x was recorded (0 = start)
    lanes: tuple        # L pairs (problem, rule)
    x: np.ndarray       # (R, L) x after those steps
    compile_s: float = 0.0
    run_s: float = 0.0


def check_config(config):
    """The synthetic settings of ``config`` merged over :data:`DEFAULTS`, checked.

    Keys other than those of :data:`DEFAULTS` (``name``, ``kind``, ...) are ignored.
    Raises ``ValueError`` with one line naming the key and the bad value.
    """
    c = {k: config.get(k, v) for k, v in DEFAULTS.items()}

    def bad(key, expected):
        raise ValueError(f"synthetic config: {key} must be {expected}, got {c[key]!r}")

    for key, allowed in (("problems", PROBLEMS), ("rules", RULES)):
        if isinstance(c[key], str):
            c[key] = [c[key]]
        if (not isinstance(c[key], (list, tuple)) or not c[key]
                or any(v not in allowed for v in c[key]) or len(set(c[key])) != len(c[key])):
            bad(key, f"a non-empty list of distinct names from {list(allowed)}")
        c[key] = list(c[key])
    is_a = lambda value, kind: isinstance(value, kind) and not isinstance(value, bool)
    for key, least in (("steps", 1), ("record_every", 1), ("seed", 0)):
        if not is_a(c[key], numbers.Integral) or c[key] < least:
            bad(key, "a positive integer" if least else "a non-negative integer")
        c[key] = int(c[key])
    for key, ok, expected in (("learning_rate", lambda h: h > 0, "a positive number"),
                              ("epsilon", lambda h: h >= 0, "a non-negative number"),
                              ("beta1", lambda h: 0 <= h < 1, "a number in [0, 1)"),
                              ("beta2", lambda h: 0 <= h < 1, "a number in [0, 1)")):
        if not is_a(c[key], numbers.Real) or not ok(c[key]):  # NaN fails ok() too
            bad(key, expected)
        c[key] = float(c[key])
    if not isinstance(c["bias_correction"], bool):
        bad("bias_correction", "true or false")
    if c["lr_decay"] not in LR_DECAYS:
        bad("lr_decay", f"one of {list(LR_DECAYS)}")
    if c["dtype"] not in DTYPES:
        bad("dtype", f"one of {list(DTYPES)}")
    return c


def precision(dtype):
    """Context in which JAX computes in ``dtype``: float64 switches x64 on locally only."""
    if dtype == "float32":
        return contextlib.nullcontext()
    import jax
    if hasattr(jax, "enable_x64"):  # jax >= 0.5
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # jax 0.4.x
    return enable_x64()


def stochastic_draws(seed, steps, probability=PROBABILITY):
    """Which steps of the stochastic problem have the large gradient: bool ``(steps,)``.

    Independent draws with ``probability`` per step, generated as the gaps between
    successes: step ``t`` (1-based) is large iff ``t`` is in
    ``np.cumsum(np.random.default_rng(seed).geometric(probability, n))`` for large
    enough ``n`` (about ``steps * probability`` numbers instead of ``steps``). A longer
    run continues the draws of a shorter one with the same seed.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(steps, dtype=bool)
    batch = int(steps * probability * 1.05) + 64
    last = 0
    while last < steps:
        positions = last + np.cumsum(rng.geometric(probability, batch))
        out[positions[positions <= steps] - 1] = True
        last = int(positions[-1])
    return out


def lanes_of(problems=PROBLEMS, rules=("adam", "amsgrad")):
    """The (problem, rule) pairs, problem-major: the lanes of the compiled loop."""
    return tuple(itertools.product(problems, rules))


def rule_of(name):
    """``(amsgrad, variant)`` of a rule of :data:`RULES`: ``'amsgrad_optax'`` is
    ``(True, 'optax')``, ``'adam'`` is ``(False, 'lasagne')``."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; expected one of {list(RULES)}")
    rule, _, variant = name.partition("_")
    return rule == "amsgrad", variant or _rules.VARIANTS[0]


def make_step(lanes, learning_rate=0.001, beta1=0.9, beta2=0.99, epsilon=1e-8,
              bias_correction=False, lr_decay="constant", dtype="float32"):
    """One step of every lane: ``step(state, draw) -> state``.

    ``state = (t, x, m, v, v_hat)``: the int32 step count (0 before the first step) and
    arrays of shape ``(len(lanes),)``; ``draw`` is the stochastic problem's bool for this
    step (``None``: no stochastic lane). Pure, for ``lax.scan`` or ``jax.jit``. Call it
    inside :func:`precision` for float64.
    """
    import jax.numpy as jnp
    ns = _rules.namespace("jax")
    dt = jnp.dtype(dtype)
    stochastic = np.array([p == "stochastic" for p, _ in lanes])
    use_max = np.array([rule_of(r)[0] for _, r in lanes])
    variants = [rule_of(r)[1] for _, r in lanes]
    lanes_of_variant = {name: np.array([v == name for v in variants])
                        for name in dict.fromkeys(variants)}  # one call if all share one
    c = lambda value: jnp.asarray(value, dt)
    lr0, b1, b2, eps = c(learning_rate), c(beta1), c(beta2), c(epsilon)
    decay = schedules.step_decay(lr_decay, lr0)

    def step(state, draw):
        t, x, m, v, v_hat = state
        t = t + 1
        large = t % PERIOD == 1  # online: the large gradient at t = 1, 102, 203, ...
        if draw is not None:
            large = jnp.where(stochastic, draw, large)
        g = jnp.where(large, c(LARGE_GRAD), c(SMALL_GRAD))  # d/dx of 1010 x or -10 x
        tf = t.astype(dt)
        lr = decay(tf)
        new = None  # (delta, m, v, v_hat) of every lane, from its variant's call
        for name, mine in lanes_of_variant.items():
            out = _rules.adam_step(ns, g, m, v, v_hat, tf, lr, b1, b2, eps,
                                   bias_correction=bias_correction, amsgrad=use_max,
                                   variant=name)
            new = out if new is None else tuple(jnp.where(mine, a, b)
                                                for a, b in zip(out, new))
        delta, m, v, v_hat = new
        return t, jnp.clip(x - delta, c(-1), c(1)), m, v, v_hat

    return step


def initial_state(n_lanes, dtype="float32"):
    import jax.numpy as jnp
    zeros = jnp.zeros(n_lanes, jnp.dtype(dtype))
    return jnp.zeros([], jnp.int32), zeros, zeros, zeros, zeros


@functools.lru_cache(maxsize=8)  # runs that differ only in seed share the program
def compile_loop(lanes, steps, record_every, stochastic=True, unroll=5, **hyper):
    """Compile the whole run: ``loop(draws) -> x`` of shape ``(R - 1, len(lanes))``.

    ``x`` is recorded after every ``record_every`` steps and after the last step.
    ``draws`` is :func:`stochastic_draws` (bool ``(steps,)``), or ``None`` when
    ``stochastic`` is false. ``hyper`` goes to :func:`make_step`. Compile (and call)
    inside :func:`precision` for float64. Programs are cached (``compile_loop.cache_clear()``
    before timing a compilation).
    """
    import jax
    from jax import lax
    step = make_step(lanes, **hyper)
    n_chunks, rest = divmod(steps, record_every)

    def advance(state, draws, length):
        body = lambda s, d: (step(s, d), None)
        state, _ = lax.scan(body, state, draws, length=length,
                            unroll=max(1, min(unroll, length)))
        return state

    def chunk(state, draws):  # record_every steps, then record x
        state = advance(state, draws, record_every)
        return state, state[1]

    def loop(draws):
        state = initial_state(len(lanes), hyper.get("dtype", "float32"))
        head = None if draws is None else draws[:n_chunks * record_every].reshape(
            n_chunks, record_every)
        state, xs = lax.scan(chunk, state, head, length=n_chunks)
        if rest:
            tail = None if draws is None else draws[n_chunks * record_every:]
            state = advance(state, tail, rest)
            xs = jax.numpy.concatenate([xs, state[1][None]])
        return xs

    example = jax.ShapeDtypeStruct((steps,), np.bool_) if stochastic else None
    return jax.jit(loop).lower(example).compile()


def record_steps(steps, record_every):
    """The steps after which :func:`compile_loop` records x, with 0 (the start) first."""
    recorded = np.arange(0, steps + 1, record_every, dtype=np.int64)
    return recorded if recorded[-1] == steps else np.append(recorded, steps)


def simulate(problems=PROBLEMS, rules=("adam", "amsgrad"), steps=9_000_000,
             learning_rate=0.001, beta1=0.9, beta2=0.99, epsilon=1e-8, bias_correction=False,
             lr_decay="constant", seed=0, record_every=1000, dtype="float32", unroll=5):
    """Run every (problem, rule) pair for ``steps`` steps in one compiled loop.

    Parameters are those of :data:`DEFAULTS` (see :func:`check_config`); ``unroll`` is
    the number of steps per iteration of the inner loop (speed only).

    Returns
    -------
    Trajectories
        ``x[i, j]`` is lane ``j``'s x after ``steps[i]`` steps; plus compile and run
        seconds.
    """
    lanes = lanes_of(problems, rules)
    stochastic = "stochastic" in problems
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                 bias_correction=bias_correction, lr_decay=lr_decay, dtype=dtype)
    with precision(dtype):
        start = time.perf_counter()
        loop = compile_loop(lanes, steps, record_every, stochastic, unroll, **hyper)
        compiled = time.perf_counter()
        draws = stochastic_draws(seed, steps) if stochastic else None
        x = np.asarray(loop(draws))  # waits for the result
        done = time.perf_counter()
    x = np.concatenate([np.zeros((1, len(lanes)), x.dtype), x])
    return Trajectories(record_steps(steps, record_every), lanes, x,
                        compile_s=compiled - start, run_s=done - compiled)


def write_trajectories(path, traj):
    """Write ``traj`` as CSV (columns step, problem, rule, x; shortest exact decimals)
    atomically."""
    from experiments.results.files import atomic_write_text
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", "problem", "rule", "x"])
    text = traj.x.astype(str)
    for (problem, rule), column in zip(traj.lanes, text.T):
        writer.writerows(zip(traj.steps.tolist(), itertools.repeat(problem),
                             itertools.repeat(rule), column))
    atomic_write_text(path, buf.getvalue())


def read_trajectories(path):
    """``{(problem, rule): (steps int array, x float array)}`` from a trajectories CSV."""
    series = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"step", "problem", "rule", "x"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for row in reader:
            s, x = series.setdefault((row["problem"], row["rule"]), ([], []))
            s.append(int(row["step"]))
            x.append(float(row["x"]))
    return {k: (np.array(s), np.array(x)) for k, (s, x) in series.items()}


def run_synthetic(config, results_dir, quiet=False):
    """Run the synthetic experiment of ``config`` and write its trajectories.

    Parameters
    ----------
    config : dict
        ``name`` (the output folder, default ``'synthetic'``), ``kind: synthetic``, and
        the keys of :data:`DEFAULTS`: ``problems`` (``[online, stochastic]``), ``rules``
        (``[adam, amsgrad]``; any of :data:`RULES`), ``steps`` (9000000),
        ``learning_rate`` (0.001), ``beta1`` (0.9), ``beta2`` (0.99), ``epsilon`` (1e-8),
        ``bias_correction`` (false),
        ``lr_decay`` (``'constant'`` or ``'sqrt'``: lr / sqrt(t)), ``seed`` (0),
        ``record_every`` (1000), ``dtype`` (``'float32'`` or ``'float64'``).
    results_dir : str or path-like
        Files go to ``results_dir/<name>/``: ``config.yaml``, ``status.json``,
        ``trajectories.csv`` (step, problem, rule, x). The figure is drawn from them
        by :func:`experiments.analysis.figures.plot_synthetic`.
    quiet : bool
        No message.

    Returns
    -------
    dict
        The status written: ``state``, timings, the final x of every lane and the
        provenance (:func:`experiments.provenance.record`).
    """
    from experiments.results.store import RunStore
    settings = check_config(config)
    name = config.get("name", "synthetic")
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name \
            or os.sep in name:
        raise ValueError(f"synthetic config: name must be a folder name, got {name!r}")
    store = RunStore(os.path.join(os.fspath(results_dir), name))
    store.write_config({"name": name, "kind": "synthetic", **settings})
    from experiments.training import provenance
    facts = provenance.record()  # what made the run, as a grid's runs record it
    store.write_status({"state": "running", **facts})
    try:
        traj = simulate(**settings)
        csv_path = os.path.join(store.run_dir, "trajectories.csv")
        write_trajectories(csv_path, traj)
    except BaseException as error:
        store.write_status({"state": "failed", "error": f"{type(error).__name__}: {error}",
                            **facts})
        raise
    status = {"state": "finished", "steps": settings["steps"],
              "compile_seconds": round(traj.compile_s, 3),
              "run_seconds": round(traj.run_s, 3),
              "final_x": {f"{p}/{r}": float(x) for (p, r), x in zip(traj.lanes, traj.x[-1])},
              **facts}
    store.write_status(status)
    if not quiet:
        finals = ", ".join(f"{k} {v:+.3f}" for k, v in status["final_x"].items())
        print(f"{name}: {len(traj.lanes)} runs x {settings['steps']:,} steps in "
              f"{traj.run_s:.2f} s (compile {traj.compile_s:.2f} s); final x: {finals} "
              f"-> {store.run_dir}")
    return status
