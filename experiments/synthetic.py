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
import functools
import sys
import itertools
import os
import time
from typing import NamedTuple

import numpy as np

from amsgrad import rules as _rules
from experiments.config import schedules
from experiments.config.loading import ConfigError, parse_config
from experiments.config.synthetic_keys import PROBLEMS, RULES, SyntheticConfig
from experiments.results import faults
from experiments.results.store import RunStore
from experiments.results.trajectories import write_trajectories
from experiments.training import provenance
from experiments.training.progress import duration, summary_line

#: Gradients of the two linear losses, and the large gradient's period / probability.
LARGE_GRAD, SMALL_GRAD, PERIOD, PROBABILITY = 1010.0, -10.0, 101, 0.01

__all__ = ["Trajectories", "rule_of", "stochastic_draws", "make_step", "compile_loop",
           "simulate", "run_synthetic", "run", "precision"]


class Trajectories(NamedTuple):
    """Recorded x of every lane, and seconds spent compiling (0 if cached) and running
    (drawing the stochastic steps and the loop)."""
    steps: np.ndarray   # (R,) int64, the step after which x was recorded (0 = start)
    lanes: tuple        # L pairs (problem, rule)
    x: np.ndarray       # (R, L) x after those steps
    compile_s: float = 0.0
    run_s: float = 0.0


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

    Parameters are the synthetic config's keys
    (:data:`experiments.config.synthetic_keys.KEYS`); ``unroll`` is
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


def run_synthetic(config, results_dir, quiet=False):
    """Run the synthetic experiment of ``config`` and write its trajectories.

    Parameters
    ----------
    config : SyntheticConfig or dict
        A checked config (:func:`experiments.config.synthetic_keys.parse_synthetic`), or
        a dict of its keys (``name``, and those of
        :data:`~experiments.config.synthetic_keys.DEFAULTS`: a missing one at its
        default), checked here.
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
        provenance (:func:`experiments.training.provenance.record`).
    """
    if not isinstance(config, SyntheticConfig):
        config = parse_config({"kind": "synthetic", **dict(config)},
                              default_name="synthetic")
    settings, name = config.settings, config.name
    store = RunStore(os.path.join(os.fspath(results_dir), name))
    store.write_config(config.to_dict())
    facts = provenance.record()  # what made the run, as a grid's runs record it
    store.write_status({"state": "running", **facts})
    try:
        traj = simulate(**settings)
        write_trajectories(os.path.join(store.run_dir, "trajectories.csv"), traj)
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


def run(config, options):
    """The synthetic kind's runner (:mod:`experiments.config.kinds`): run ``config``
    unless its folder under ``options.results_dir`` holds it done; with
    ``options.dry_run`` only say so. Returns the summary a grid's runner returns,
    with ``folder``, the experiment's folder."""
    out = getattr(options, "out", None) or sys.stdout
    store = RunStore(os.path.join(os.fspath(options.results_dir), config.name))
    expected = config.to_dict()
    stored, state = store.read_config(), (store.read_status() or {}).get("state")
    if state == "finished" and stored != expected:
        diffs = ", ".join(f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in expected.items()
                          if stored.get(k) != v)
        raise ConfigError(f"{config.path}: {store.run_dir} holds a run with other settings "
                          f"({diffs}); change the config's name or use --results DIR")
    done = state == "finished"
    settings = config.settings
    lanes = len(settings["problems"]) * len(settings["rules"])
    print(f"{config.name}: 1 run ({lanes} lanes x {settings['steps']:,} steps) in "
          f"{store.run_dir}: {'done' if done else 'to do'}", file=out)
    summary = {"total": 1, "done_before": int(done), "trained": [], "failed": [],
               "plan": None, "folder": store.run_dir}
    if done or options.dry_run:
        return summary
    try:
        status = run_synthetic(config, options.results_dir, quiet=True)  # its line is below
    except Exception as error:
        if faults.is_storage_fault(error):
            raise
        summary["failed"].append(config.name)
        print(f"failed {config.name}: {type(error).__name__}: {error}",
              file=sys.stderr)
    else:
        summary["trained"].append(config.name)
        finals = "".join(f" {k} {v:+.4f}" for k, v in status["final_x"].items())
        seconds = status["compile_seconds"] + status["run_seconds"]
        print(f"finished {config.name}: final x{finals} ({duration(seconds)})", file=out)
    print(summary_line(config.name, summary), file=out)
    return summary
