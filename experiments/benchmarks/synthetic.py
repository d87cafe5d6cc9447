"""The synthetic problem: the compiled loop against one compiled call per step.

Times the whole figure (every rule on every problem, 9 million steps each) as one
compiled loop, in float32 and float64, with compilation timed apart; then a jitted
single step called from Python for ``--per-step-steps`` steps, extrapolated to the
full run -- the shape of the original experiment, though each call here advances all
lanes at once. Prints both side by side with the ratio, and the final x of every lane
in both precisions (float32 must not change the outcome).
"""
import time

import numpy as np

from experiments import synthetic
from experiments.config.synthetic_keys import DEFAULTS


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=DEFAULTS["steps"],
                        help="steps per run (default %(default)s)")
    parser.add_argument("--per-step-steps", type=int, default=20_000,
                        help="steps of the one-call-per-step loop to time (default %(default)s)")
    parser.add_argument("--record-every", type=int,
                        default=DEFAULTS["record_every"],
                        help="steps between recorded points (default %(default)s)")
    parser.add_argument("--unroll", type=int, default=5,
                        help="steps per iteration of the inner loop (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)


def time_loop(dtype, args):
    """(compile s, run s, final x) of the compiled loop."""
    synthetic.compile_loop.cache_clear()
    traj = synthetic.simulate(steps=args.steps, record_every=args.record_every,
                              seed=args.seed, dtype=dtype, unroll=args.unroll)
    return traj.compile_s, traj.run_s, traj.x[-1], traj.lanes


def time_per_step(args):
    """(compile s, seconds per call) of a jitted single step called from Python."""
    import jax
    c = DEFAULTS
    lanes = synthetic.lanes_of(c["problems"], c["rules"], c["beta2"])
    opts = synthetic.lane_optimizers(c["rules"], c["beta2"], {
        k: c[k] for k in ("learning_rate", "beta1", "epsilon", "bias_correction")})
    step, initial = synthetic.make_step(lanes, opts, c["lr_decay"], c["learning_rate"])
    step = jax.jit(step)
    draws = synthetic.stochastic_draws(args.seed, args.per_step_steps)
    state = initial()
    start = time.perf_counter()
    jax.block_until_ready(step(state, draws[0]))
    compiled = time.perf_counter()
    for draw in draws:
        state = step(state, draw)
    jax.block_until_ready(state)
    done = time.perf_counter()
    return compiled - start, (done - compiled) / len(draws)


def run(args):
    if args.steps < 1 or args.per_step_steps < 1 or args.record_every < 1 or args.unroll < 1:
        raise SystemExit("benchmark synthetic: --steps, --per-step-steps, --record-every "
                         "and --unroll must be positive")
    import jax
    jax.numpy.zeros(1).block_until_ready()  # start the backend before timing compilation
    results = {dtype: time_loop(dtype, args) for dtype in ("float32", "float64")}
    step_compile, per_call = time_per_step(args)
    lanes = results["float32"][3]
    print(f"synthetic problem: {len(lanes)} runs ({', '.join(f'{p}/{r}' for p, r in lanes)})"
          f" x {args.steps:,} steps, x recorded every {args.record_every:,}")
    print(f"{'':28s}{'compile s':>10s}{'run s':>10s}{'ns/step':>9s}")
    for dtype, (compile_s, run_s, _, _) in results.items():
        print(f"{'compiled loop, ' + dtype:28s}{compile_s:10.2f}{run_s:10.3f}"
              f"{run_s / args.steps * 1e9:9.1f}")
    per_step_total = per_call * args.steps
    print(f"{'one call per step, float32':28s}{step_compile:10.2f}{per_step_total:10.1f}"
          f"{per_call * 1e9:9.0f}   (timed over {args.per_step_steps:,} steps, extrapolated)")
    print(f"compiled loop (float32) is {per_step_total / results['float32'][1]:,.0f}x "
          "faster than one call per step")
    x32, x64 = results["float32"][2], results["float64"][2]
    print(f"final x {'':21s}{'float32':>10s}{'float64':>10s}")
    for (p, r), a, b in zip(lanes, x32, x64):
        print(f"  {p + '/' + r:26s}{a:10.5f}{b:10.5f}")
    print(f"largest float32 - float64 difference: {np.max(np.abs(x32 - x64)):.2e}")
