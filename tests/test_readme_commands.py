"""Every command of README.md's shell blocks runs, made small, so a README that drifts
from the code fails here.

Each line of a ```bash block is a command. :data:`RUN` holds those that run here, in the
README's order, in one temporary checkout (``scripts/``, ``examples/`` and the packages
linked, ``../shared/data`` the real data, the results and figures in it), each with what is
added to make it small and why; :data:`NOT_HERE` the prefixes of those that cannot run in
a test, each with the reason. A command in neither, or an entry no command matches, fails.

Made small for all: ``configs/`` holds the published configs cut by :data:`SMALL` (one
epoch, two seeds, a subset of MNIST; names kept, so the folders are the README's).
"""
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("AMSGRAD_REAL_DATA", REPO.parent / "shared" / "data"))

#: Prefix of a command -> why it does not run in a test.
NOT_HERE = {
    "pip install": "installs packages from an index (no network in a test); CI installs "
                   "the suite this way (.ci/run)",
    "python3 -m venv": "makes a virtual environment and activates it in the shell (CI "
                       "does: .ci/run)",
    "export ": "sets a variable of the user's shell (the suite and conftest.py "
                            "set these flags when it is unset)",
    "python -m pytest": "the test suite itself",
    "tensorboard --logdir": "TensorBoard's server, which runs until it is stopped (the event "
                            "files it reads are made and read back by the tests)",
    "python scripts/plot.py results/vgg": "needs the VGG grid trained (hours on a GPU); the "
                                          "same commands on results/logreg run here",
    "python scripts/report.py results/vgg": "as plot.py results/vgg",
}

#: README command -> (arguments added here, why, files it must leave, below the checkout).
RUN = {
    "python scripts/run_grid.py configs/synthetic.yaml":
        ((), "", ["results/synthetic/synthetic.png"]),
    "python scripts/run_grid.py configs/vgg.yaml":
        (("--dry-run",), "a VGG grid trains for hours: its plan only", []),
    "python scripts/run_grid.py configs/vgg.yaml --dry-run": ((), "", []),
    "python scripts/run_grid.py configs/logreg.yaml --only updater=amsgrad --only seed=0":
        ((), "", ["results/logreg/amsgrad_lr=0.001_b2=0.99_bc=on_seed=0/curves.csv"]),
    "python scripts/run_grid.py configs/logreg.yaml --group-size 1":
        (("--only", "seed=0"), "one run after another: seed 0's runs only",
         ["results/logreg/adam_lr=0.001_b2=0.99_bc=on_seed=0/curves.csv"]),
    "python scripts/run_grid.py configs/logreg.yaml --log tensorboard,wandb":
        ((), "W&B offline (WANDB_MODE)",
         ["results/logreg/adam_lr=0.001_b2=0.999_bc=off_seed=1/curves.csv"]),
    "python scripts/run_grid.py configs/vgg.yaml --executor ray --address auto "
    "--num-gpus 0.5":
        (("--dry-run",), "needs a Ray cluster (ray start) with GPUs: the options are checked "
                         "and the plan made", []),
    "python scripts/run_grid.py configs/logreg.yaml --set 'grid.beta2=[0.9,0.99]'":
        ((), "", ["results/logreg_b2=0.9-0.99_21e97ccb/grid.yaml"]),
    "python scripts/run_grid.py configs/logreg_baselines.yaml":
        ((), "", ["results/logreg_baselines/momentum_lr=0.01_seed=1/curves.csv"]),
    "python scripts/plot.py results/logreg --out out/logreg/figures":
        ((), "", ["out/logreg/figures/val_acc.png"]),
    "python scripts/plot.py results/logreg --metrics val_acc --formats png,svg "
    "--y-range shared": ((), "", ["results/logreg/figures/val_acc.svg"]),
    "python scripts/report.py results/logreg --out out/logreg":
        ((), "", ["out/logreg/report.md"]),
    "python scripts/report.py results/logreg_baselines --baseline adam "
    "--candidates amsgrad,momentum": ((), "", ["results/logreg_baselines/report.md"]),
    "python scripts/report.py results/logreg results/logreg_b2=0.9-0.99_21e97ccb":
        ((), "", ["results/logreg/vs_logreg_b2=0.9-0.99_21e97ccb.md"]),
    "python scripts/plot.py results/logreg --tensorboard": ((), "", []),
    "python examples/lasagne_style_logreg.py --data-dir ../shared/data --epochs 1":
        (("--quiet",), "no progress bar", []),
}

#: The published configs made small here: config file -> its changes (--set items).
SMALL = {
    "logreg.yaml": ["epochs=1", "seeds=[0,1]", "grid.learning_rate=[0.001]",
                    "train_subset=5000", "val_subset=2000"],
    "logreg_baselines.yaml": ["epochs=1", "seeds=[0,1]", "grid.learning_rate=[0.001]",
                              "rules.momentum.learning_rate=[0.01]",
                              "rules.nesterov_momentum.learning_rate=[0.01]",
                              "train_subset=5000", "val_subset=2000"],
}


def readme_commands(text=None):
    """Each command of README.md's shell blocks, as tokens (comments dropped, lines
    continued with a backslash joined)."""
    text = (REPO / "README.md").read_text() if text is None else text
    commands = []
    for block in re.findall(r"^\s*```(?:bash|sh|shell|console)\n(.*?)^\s*```", text,
                            re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens:
                commands.append(tokens)
    return commands


def key(tokens):
    return shlex.join(tokens)


def not_here(command):
    return next((why for prefix, why in NOT_HERE.items() if command.startswith(prefix)), None)


def test_every_readme_command_runs_here_or_says_why_not():
    commands = [key(t) for t in readme_commands()]
    assert len(commands) > 20
    neither = [c for c in commands if c not in RUN and not_here(c) is None]
    assert not neither, ("README commands that tests/test_readme_commands.py neither runs nor "
                         "lists as not runnable (add each to RUN or NOT_HERE): "
                         + "; ".join(neither))
    assert not [c for c in RUN if not_here(c) is not None]  # one or the other
    stale = [c for c in list(RUN) + list(NOT_HERE)
             if not any(x == c or (c in NOT_HERE and x.startswith(c)) for x in commands)]
    assert not stale, f"entries no README command matches any more: {stale}"


def test_a_new_command_in_neither_list_is_caught():
    new = readme_commands("text\n```bash\npython scripts/run_grid.py configs/x.yaml\n"
                          "pip install -e .  # fine\n```\n")
    assert [key(t) for t in new] == ["python scripts/run_grid.py configs/x.yaml",
                                     "pip install -e ."]
    assert key(new[0]) not in RUN and not_here(key(new[0])) is None
    assert not_here(key(new[1])) is not None


def _checkout(tmp_path):
    """A checkout to run the commands in: the code linked, configs made small, the real
    data at ../shared/data."""
    from experiments.config.overrides import apply_overrides
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("amsgrad", "experiments", "scripts", "examples"):
        (root / name).symlink_to(REPO / name)
    (root / "configs").mkdir()
    for config in (REPO / "configs").glob("*.yaml"):
        data = yaml.safe_load(config.read_text())
        if config.name in SMALL:
            data = apply_overrides(data, SMALL[config.name])
        (root / "configs" / config.name).write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(REAL)
    return root


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"real data not found in {REAL}")
def test_the_readme_commands_run(tmp_path):
    root = _checkout(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO), AMSGRAD_DATA_DIR=str(REAL),
               MPLBACKEND="Agg", WANDB_MODE="offline", WANDB_SILENT="true",
               WANDB_DIR=str(tmp_path / "wandb"), WANDB_CONFIG_DIR=str(tmp_path / "wandb"))
    (tmp_path / "wandb").mkdir()
    ran, began = [], time.perf_counter()
    for tokens in readme_commands():
        command = key(tokens)
        if command not in RUN:
            continue
        added, _, makes = RUN[command]
        argv = [sys.executable if tokens[0] == "python" else tokens[0], *tokens[1:], *added]
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{command} {' '.join(added)}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr
        for path in makes:
            assert (root / path).is_file(), f"{command}: made no {path}"
        ran.append(f"{time.perf_counter() - began:5.0f} s  {command}")
    assert len(ran) == len(RUN)
    events = [p.name for p in (root / "results" / "logreg").glob("*/events.out.tfevents.*")]
    assert {name.endswith(".export") for name in events} == {True, False}  # live, exported
    assert list((tmp_path / "wandb").glob("wandb/offline-run-*"))  # --log wandb
    print("\n".join(["README commands, time since the first one ended:", *ran]))
