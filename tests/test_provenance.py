"""What a run's status.json records of what made it: the code (version, git commit,
dirty flag), the command line and the library versions."""
import json
import os
import shlex
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

from test_run_grid_cli import REAL, SCRIPT, needs_mnist, write

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ONE_RUN = """\
    name: one
    model: logreg
    epochs: 1
    train_subset: 500
    val_subset: 200
    grid:
      updater: [amsgrad]
    seeds: [0]
    """


def git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True).stdout


@needs_mnist
@pytest.mark.slow
def test_status_of_a_real_run_records_code_command_and_libraries(tmp_path):
    import amsgrad
    config = write(tmp_path, ONE_RUN, "one.yaml")
    args = [SCRIPT, str(config), "--results", str(tmp_path / "r"), "--data-dir", REAL,
            "--quiet"]
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    status = json.loads((tmp_path / "r" / "one" / "amsgrad_seed=0" / "status.json").read_text())
    assert status["command"] == shlex.join([os.path.basename(sys.executable), *args])
    assert status["cwd"] == str(tmp_path)
    code = {"version": amsgrad.__version__}
    if shutil.which("git") and os.path.exists(os.path.join(REPO, ".git")):  # a checkout
        code["commit"] = git(REPO, "rev-parse", "HEAD").strip()
        code["dirty"] = bool(git(REPO, "status", "--porcelain", "--untracked-files=no").strip())
        assert len(code["commit"]) == 40
    assert status["code"] == code
    expected = {name: metadata.version(name) for name in ("numpy", "jax", "jaxlib", "optax")}
    assert {k: status["versions"][k] for k in expected} == expected
    assert "theano" not in status["versions"]  # the JAX engine trained it
    assert status["versions"]["executable"] == sys.executable


def code_version(package_root, path=None):
    """provenance.code_version() of the suite copied to ``package_root``."""
    env = dict(os.environ, PYTHONPATH=str(package_root))
    if path is not None:
        env["PATH"] = path
    done = subprocess.run(
        [sys.executable, "-c", "import json, experiments, experiments.training.provenance as p; "
         "print(experiments.__file__); print(json.dumps(p.code_version()))"],
        capture_output=True, text=True, env=env, check=True, cwd=package_root)
    where, record = done.stdout.splitlines()
    assert where == os.path.join(package_root, "experiments", "__init__.py")
    return json.loads(record)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_commit_and_dirty_flag_of_a_checkout_and_nothing_elsewhere(tmp_path):
    from amsgrad import __version__ as version
    checkout = tmp_path / "checkout"
    for package in ("amsgrad", "experiments"):
        shutil.copytree(os.path.join(REPO, package), checkout / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    assert code_version(checkout) == {"version": version}  # not in any repository

    git(checkout, "init", "-q")
    git(checkout, "add", ".")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = git(checkout, "rev-parse", "HEAD").strip()
    (checkout / "scratch.txt").write_text("an untracked file does not count")
    assert code_version(checkout) == {"version": version, "commit": head, "dirty": False}
    with open(checkout / "experiments" / "training" / "provenance.py", "a") as f:
        f.write("\n# changed\n")
    assert code_version(checkout) == {"version": version, "commit": head, "dirty": True}
    # no git on the PATH: the commit is left out, silently
    assert code_version(checkout, path=str(tmp_path / "empty")) == {"version": version}

    # a copy inside some other repository (e.g. a venv in a project) is not its checkout
    nested = tmp_path / "project"
    shutil.copytree(checkout, nested / "venv" / "site", ignore=shutil.ignore_patterns(".git"))
    git(nested, "init", "-q")
    assert code_version(nested / "venv" / "site") == {"version": version}


def test_theano_version_only_for_the_theano_engine():
    from experiments.training import restarted
    assert "theano" not in restarted({}, "jax", engine="jax")["versions"]
    versions = restarted({}, "theano", engine="theano")["versions"]
    try:
        expected = {"theano": metadata.version("theano")}  # the Theano environment
    except metadata.PackageNotFoundError:
        expected = {}
    assert {k: v for k, v in versions.items() if k == "theano"} == expected


@pytest.mark.parametrize("argv, typed", [
    (["scripts/run_grid.py", "configs/a b.yaml", "--quiet"],
     "python scripts/run_grid.py 'configs/a b.yaml' --quiet"),
    (["/opt/venv/bin/amsgrad-grid", "configs/x.yaml"], "amsgrad-grid configs/x.yaml"),
    (["-c"], "python -c"),
])
def test_the_command_line_as_typed(argv, typed, monkeypatch):
    from experiments.training import provenance
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(sys, "executable", "/opt/venv/bin/python")
    assert provenance.command_line() == {"command": typed, "cwd": os.getcwd()}


def test_invoked_as_sets_the_command_within_the_block_only():
    from experiments.training import provenance
    own = provenance.command_line()
    assert own["cwd"] == os.getcwd() and sys.argv[0] in own["command"]
    driver = {"command": "python scripts/run_grid.py x.yaml", "cwd": "/elsewhere"}
    with provenance.invoked_as(driver):
        assert provenance.command_line() == driver
    assert provenance.command_line() == own
