"""Train every run of a grid config that is not done yet.

    python scripts/run_grid.py configs/vgg.yaml
    python scripts/run_grid.py configs/vgg.yaml --only updater=amsgrad --only seed=0
    python scripts/run_grid.py configs/smoke.yaml --results /tmp/results --dry-run
    python scripts/run_grid.py configs/vgg.yaml --executor ray --address auto --num-gpus 0.5
    python scripts/run_grid.py configs/logreg.yaml --set grid.beta2=[0.9,0.99] --set epochs=50

Runs go to ``<results>/<config name>/<run id>/``. Finished and diverged runs are
skipped; an interrupted run resumes from its checkpoint, so the same command can be
rerun at any time, and several at once on one results folder (each run is claimed
by one of them; see docs/scaling.md). Exit status: 0 when every selected run is done
or being trained by another runner, 1 when a run failed (its error is in its
status.json), 2 for a mistake in the config or the arguments, 3 when the results
folder cannot be written (a full disk, a read-only file system, no permission, a file
where a folder should be: nothing is half-written, and once that is fixed the same
command resumes), 130 when interrupted.

A config changed by ``--set`` is another grid, ``<config name>_<what changed>_<hash>``
(see experiments/config/overrides.py); ``--epochs N`` is ``--set epochs=N``.
"""
import argparse
import functools
import os
import pkgutil
import shlex
import signal
import sys
import warnings

from experiments.analysis.epilogue import epilogue
from experiments.config import kinds
from experiments.config.loading import ConfigError
from experiments.config.overrides import load_with_overrides, parse_item
from experiments.data import DataError
from experiments.engines import engine_names
from experiments.grid.executors import MAX_ATTEMPTS
from experiments.grid.options import GridOptions
from experiments.grid.runner import EXECUTORS
from experiments.results import faults
from experiments.results.claims import STALE_AFTER
from experiments.training import metric_logs
from experiments.training.grouping import parse_group_size


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _positive_float(text):
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _group_size(text):
    try:
        return parse_group_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', "
                                         f"got {text!r}") from None


def _metric_log(text):
    try:
        return metric_logs.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _interrupt(signum, frame):  # SIGTERM (kill, a batch system) ends like Ctrl-C
    raise KeyboardInterrupt


def _program():
    """The name the user called: amsgrad-grid installed, run_grid.py from a checkout."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name in ("amsgrad-grid", "run_grid.py") else "run_grid.py"


def _parser():
    prog = _program()
    # the examples as the user calls the command: amsgrad-grid, or run_grid.py in a checkout
    called = prog if prog == "amsgrad-grid" else "python scripts/run_grid.py"
    doc = __doc__.replace("python scripts/run_grid.py", called)
    parser = _Parser(prog=prog, description=doc.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog="\n\n".join(doc.split("\n\n")[1:]))
    parser.add_argument("config", help="a YAML config, e.g. configs/vgg.yaml")
    parser.add_argument("--results", default="results", metavar="DIR",
                        help="results folder (default: %(default)s)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="data folder (default: $AMSGRAD_DATA_DIR, else the user cache)")
    parser.add_argument("--engine", choices=engine_names(), default="jax",
                        help="training engine (default: %(default)s)")
    parser.add_argument("--only", action="append", default=[], metavar="KEY=VALUE",
                        help="train only runs with this axis value (repeatable; a key given "
                             "twice matches either value), e.g. lr=0.001, bc=off, seed=0")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="set a config key (repeatable; the value as YAML; nested keys "
                             "with dots), e.g. epochs=50, grid.beta2=[0.9,0.99], "
                             "resources.num_gpus=1; a changed experiment goes to a grid "
                             "named <name>_<what changed>_<hash>")
    parser.add_argument("--epochs", type=_positive_int, metavar="N",
                        help="train N epochs instead: --set epochs=N (the schedule changes "
                             "with it, so results go to another grid)")
    parser.add_argument("--dry-run", action="store_true",
                        help="show the plan and every run's state; train nothing")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (they show on a terminal only anyway); "
                             "the line of each run that ends and the summary stay")
    parser.add_argument("--group-size", type=_group_size, default="auto", metavar="K",
                        help="JAX: train up to K runs of one rule (Adam, AMSGrad and AdamW "
                             "are one) that differ only in its hyperparameters and seed "
                             "together in one compiled program; 1: one run after another; "
                             "'auto' (default): "
                             "as many as fit in the memory of the device that trains them, "
                             "except a conv net on a CPU (1: faster there), and the Theano "
                             "engine (1)")
    parser.add_argument("--log", type=_metric_log, default=(), metavar="KINDS",
                        help="also log each run's curves to tensorboard (event files in the "
                             "run's folder) and/or wandb (Weights & Biases; WANDB_MODE etc. "
                             "apply), comma-separated; needs the .[tensorboard] / .[wandb] "
                             "extra; changes nothing of the experiment")
    _scaling_arguments(parser.add_argument_group("scaling out (see docs/scaling.md)"))
    return parser


def _scaling_arguments(scale):
    """The options of Ray, retries and claims."""
    scale.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="train here, or each run (or group of runs) as a Ray task "
                            "(needs the .[ray] extra) (default: %(default)s)")
    scale.add_argument("--address", metavar="ADDR",
                       help="Ray cluster to join: host:port, or auto for the one 'ray start' "
                            "runs on this host (default: $RAY_ADDRESS, else a new local Ray "
                            "on 127.0.0.1 for this grid alone)")
    scale.add_argument("--num-gpus", type=_non_negative_float, metavar="N",
                       help="GPUs per run on Ray, e.g. 0.25 (default: the config's "
                            "resources.num_gpus, else 0)")
    scale.add_argument("--num-cpus", type=_positive_float, metavar="N",
                       help="CPUs per run on Ray (default: resources.num_cpus, else 1)")
    scale.add_argument("--max-attempts", type=_positive_int, default=MAX_ATTEMPTS, metavar="N",
                       help="give a run up after N starts that did not get past the epoch "
                            "the one before began at (default: %(default)s)")
    scale.add_argument("--heartbeat-timeout", type=_positive_float, default=STALE_AFTER,
                       metavar="S", help="take a run over when its runner's claim has not "
                       "been refreshed for S seconds (the runner is presumed dead; it "
                       "refreshes it every S/12 s); every runner on a results folder should "
                       "use the same S (default: %(default)g)")


#: Options that apply to some kinds only (kinds.Kind.options), as given on the command line.
_KIND_OPTIONS = {"only": "--only", "engine": "--engine", "epochs": "--epochs",
                 "executor": "--executor", "log": "--log", "group_size": "--group-size"}
_DEFAULTS = {"only": [], "engine": "jax", "epochs": None, "executor": "local", "log": (),
             "group_size": "auto"}


def _config(args):
    """The config the arguments ask for: the file, its --set changes, --epochs; and its
    kind, which says which options apply to it."""
    config = load_with_overrides(args.config, args.set)
    kind = kinds.get_kind(config.kind)
    given = [flag for key, flag in _KIND_OPTIONS.items()
             if getattr(args, key) != _DEFAULTS[key] and key not in kind.options]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise ConfigError(f"{args.config}: {', '.join(given)} {verb} to training grids only "
                          f"(this is a {kind.name} config)")
    if args.epochs is not None and any(parse_item(s)[0] == ("epochs",) for s in args.set):
        raise ConfigError("--epochs and --set epochs=...: give the number of epochs once")
    # --epochs N is --set epochs=N (one experiment, one folder); the results folder
    # finds the folder an earlier version gave it (overrides.former_names)
    items = args.set + ([f"epochs={args.epochs}"] if args.epochs is not None else [])
    return load_with_overrides(args.config, items, results_dir=args.results), kind


def _epilogue():
    """What the grid says at its end (:mod:`experiments.analysis.epilogue`), naming the
    report and plot commands as this one was called."""
    if _program() == "amsgrad-grid":
        report, plot = "amsgrad-report", "amsgrad-plot"
    else:  # the scripts beside this one, as it was given
        python, here = os.path.basename(sys.executable), os.path.dirname(sys.argv[0])
        report, plot = (shlex.join([python, os.path.join(here, f"{name}.py")])
                        for name in ("report", "plot"))
    return functools.partial(epilogue, report=report, plot=plot,
                             encoding=getattr(sys.stdout, "encoding", None))


def _options(args):
    """The :class:`~experiments.grid.options.GridOptions` of the arguments."""
    return GridOptions(results_dir=args.results, engine=args.engine, data_dir=args.data_dir,
                       only=tuple(args.only), quiet=args.quiet, dry_run=args.dry_run,
                       executor=args.executor, address=args.address, num_cpus=args.num_cpus,
                       num_gpus=args.num_gpus, max_attempts=args.max_attempts,
                       group_size=args.group_size, metric_log=args.log,
                       stale_after=args.heartbeat_timeout,
                       heartbeat=args.heartbeat_timeout / 12, epilogue=_epilogue())


def _run(config, kind, options):
    """Run ``config`` by its kind's runner; draw its figure where the kind has one."""
    summary = kind.run(config, options)
    if kind.figure and summary["trained"]:
        pkgutil.resolve_name(kind.figure)(summary["folder"])
    return summary


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.executor != "ray" and (args.address or args.num_gpus is not None
                                   or args.num_cpus is not None):
        parser.error("--address, --num-gpus and --num-cpus need --executor ray")
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        config, kind = _config(args)
        metric_logs.check(args.log)  # before anything is planned or trained
        with faults.writing_to(args.results, "--results"):
            summary = _run(config, kind, _options(args))
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except faults.StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return faults.EXIT_STATUS
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 1 if summary["failed"] or summary.get("given_up") else 0


if __name__ == "__main__":
    sys.exit(main())
