"""The synthetic convex problem of the AMSGrad paper (Reddi et al., 2018, section 5).

One scalar ``x`` in ``[-1, 1]`` starts at 0 and is clipped back into the interval after
every step. The loss is linear, so its gradient does not depend on ``x``:

- ``online``: ``f_t(x) = 1010 x`` if ``t mod 101 == 1``, else ``-10 x``;
- ``stochastic``: ``1010 x`` with probability 0.01, else ``-10 x``, drawn afresh every step.

The optimum is ``x = -1``. With lr 0.001, beta1 0.9, beta2 0.99 and no bias correction
Adam drifts to ``+1`` while AMSGrad moves towards ``-1``.

Rules: any rule of the registry (:mod:`experiments.optimizers`) by its name, or
``<rule>_<variant>`` for one of its forms (``amsgrad_pytorch``, ``amsgrad_optax``: the
same rule as PyTorch and optax apply it, ``docs/variants.md``; ``adabound_paper``). The
config's hyperparameters go to every rule that takes them; ``beta2`` may be a list, a
lane per value (``yogi_b2=0.999``).

The original ran 9 million steps per optimizer, one Python call per step. Here every
lane (problem, rule, beta2) is one entry of a vector and all lanes advance together in
one compiled ``lax.scan``: an outer scan over recorded points, an inner (unrolled) scan
over the steps between them, so trajectories are decimated on the device. Each rule's
step is its family's optax transformation (the library's step math,
:mod:`amsgrad.rules`, :mod:`amsgrad.fixes`), one per family present with the lanes'
values as per-lane arrays.

The stochastic draws come from numpy, host-side, from ``np.random.default_rng(seed)``
(see :func:`stochastic_draws`), so they are the same for every jax version, and every
rule sees the same draws.
"""
import contextlib
import functools
import sys
import itertools
import os
import time
from typing import NamedTuple

import numpy as np

from experiments import optimizers
from experiments.config import schedules
from experiments.config.loading import ConfigError, parse_config
from experiments.config.synthetic_keys import PROBLEMS, SyntheticConfig, lane_rule
from experiments.results import faults
from experiments.results.store import RunStore
from experiments.results.trajectories import write_trajectories
from experiments.training import provenance
from experiments.training.progress import duration, summary_line

#: Gradients of the two linear losses, and the large gradient's period / probability.
LARGE_GRAD, SMALL_GRAD, PERIOD, PROBABILITY = 1010.0, -10.0, 101, 0.01

__all__ = ["Trajectories", "lane_rule", "lanes_of", "lane_optimizers", "stochastic_draws",
           "make_step", "compile_loop", "simulate", "run_synthetic", "run", "precision"]


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


def lanes_of(problems=PROBLEMS, rules=("adam", "amsgrad"), beta2=(0.99,)):
    """The (problem, lane name) pairs, problem-major: the lanes of the compiled loop; a
    lane's name is its rule's, with ``_b2=<beta2>`` when ``beta2`` holds several."""
    beta2 = tuple(beta2) if isinstance(beta2, (list, tuple)) else (beta2,)
    names = [rule if len(beta2) == 1 else f"{rule}_b2={b:g}" for rule in rules for b in beta2]
    return tuple(itertools.product(problems, names))


def lane_optimizers(rules, beta2, hyper):
    """Each lane's :class:`~experiments.optimizers.Optimizer` (per problem the same), in
    :func:`lanes_of` order: the rule with the config's values it takes."""
    out = []
    for name in rules:
        rule, values = lane_rule(name)
        entry = optimizers.get_rule(rule)
        for b in (beta2 if isinstance(beta2, (list, tuple)) else (beta2,)):
            given = {**hyper, "beta2": b, **values}
            out.append(optimizers.Optimizer.of(rule, **{k: v for k, v in given.items()
                                                        if entry.takes(k)}))
    return out


def _programs(lanes, opts, dtype):
    """``[(lane indices, family, per-lane values)]``: the lanes of each program (the
    optimizers' program key), values as ``(1, n)`` arrays of ``dtype`` (a seed of ``n``
    runs: the storage layout every family's transformation takes)."""
    groups = {}
    per_problem = len(opts)
    for i in range(len(lanes)):
        opt = opts[i % per_problem]
        groups.setdefault(opt.program_key(), []).append((i, opt))
    out = []
    for members in groups.values():
        family = members[0][1].family
        values, _ = family.group_values([o.family_values() for _, o in members],
                                        (1, len(members)), dtype=dtype)
        out.append((np.array([i for i, _ in members]), family, values))
    return out


def make_step(lanes, opts, lr_decay="constant", learning_rate=0.001, dtype="float32"):
    """One step of every lane: ``(step(state, draw) -> state, initial state)``.

    ``state = (t, x, opt states)``: the int32 step count (0 before the first step), ``x``
    of shape ``(len(lanes),)`` and each program's optax state; ``draw`` is the
    stochastic problem's bool for this step (``None``: no stochastic lane). Pure, for
    ``lax.scan`` or ``jax.jit``. Call it inside :func:`precision` for float64.
    """
    import jax.numpy as jnp
    dt = jnp.dtype(dtype)
    stochastic = np.array([p == "stochastic" for p, _ in lanes])
    programs = _programs(lanes, opts, dt)
    c = lambda value: jnp.asarray(value, dt)  # noqa: E731
    decay = schedules.step_decay(lr_decay, c(learning_rate))

    def transform(family, values, lr, n):
        return family.transform({**values, "learning_rate": jnp.full((1, n), lr, dt)},
                                runs=(1, n))

    def step(state, draw):
        t, x, opt_states = state
        t = t + 1
        large = t % PERIOD == 1  # online: the large gradient at t = 1, 102, 203, ...
        if draw is not None:
            large = jnp.where(stochastic, draw, large)
        g = jnp.broadcast_to(jnp.where(large, c(LARGE_GRAD), c(SMALL_GRAD)), x.shape)
        lr = decay(t.astype(dt))  # (g: d/dx of 1010 x or -10 x)
        new_states = []
        for (idx, family, values), opt_state in zip(programs, opt_states):
            params = {"x": x[idx][None]}
            tx = transform(family, values, lr, len(idx))
            updates, opt_state = tx.update({"x": g[idx][None]}, opt_state, params)
            x = x.at[idx].add(updates["x"][0])
            new_states.append(opt_state)
        return t, jnp.clip(x, c(-1), c(1)), tuple(new_states)

    def initial():
        zeros = jnp.zeros(len(lanes), dt)
        states = tuple(transform(family, values, c(learning_rate), len(idx)).init(
            {"x": zeros[idx][None]}) for idx, family, values in programs)
        return jnp.zeros([], jnp.int32), zeros, states

    return step, initial


@functools.lru_cache(maxsize=8)  # runs that differ only in seed share the program
def compile_loop(lanes, opts, steps, record_every, stochastic=True, unroll=5, **hyper):
    """Compile the whole run: ``loop(draws) -> x`` of shape ``(R - 1, len(lanes))``.

    ``x`` is recorded after every ``record_every`` steps and after the last step.
    ``draws`` is :func:`stochastic_draws` (bool ``(steps,)``), or ``None`` when
    ``stochastic`` is false. ``opts`` and ``hyper`` go to :func:`make_step`. Compile
    (and call) inside :func:`precision` for float64. Programs are cached
    (``compile_loop.cache_clear()`` before timing a compilation).
    """
    import jax
    from jax import lax
    step, initial = make_step(lanes, opts, **hyper)
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
        state = initial()
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
    """Run every lane (problem, rule, beta2) for ``steps`` steps in one compiled loop.

    Parameters are the synthetic config's keys
    (:data:`experiments.config.synthetic_keys.KEYS`; ``beta2`` a number or a list);
    ``unroll`` is the number of steps per iteration of the inner loop (speed only).

    Returns
    -------
    Trajectories
        ``x[i, j]`` is lane ``j``'s x after ``steps[i]`` steps; plus compile and run
        seconds.
    """
    lanes = lanes_of(problems, rules, beta2)
    hyper = dict(learning_rate=learning_rate, beta1=beta1, epsilon=epsilon,
                 bias_correction=bias_correction)
    opts = tuple(lane_optimizers(rules, beta2, hyper))
    stochastic = "stochastic" in problems
    with precision(dtype):
        start = time.perf_counter()
        loop = compile_loop(lanes, opts, steps, record_every, stochastic, unroll,
                            lr_decay=lr_decay, learning_rate=learning_rate, dtype=dtype)
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
    lanes = len(lanes_of(settings["problems"], settings["rules"], settings["beta2"]))
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
        finals = status["final_x"]
        seconds = status["compile_seconds"] + status["run_seconds"]
        told = (" final x" + "".join(f" {k} {v:+.4f}" for k, v in finals.items())
                if len(finals) <= 8 else f" {len(finals)} lanes, their final x in status.json"
                f" (a table: scripts/report.py {store.run_dir})")
        print(f"finished {config.name}:{told} ({duration(seconds)})", file=out)
    print(summary_line(config.name, summary), file=out)
    return summary
