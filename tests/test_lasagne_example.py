"""examples/lasagne_style_logreg.py: plain Lasagne-style Theano or PyTensor code trains
with AMSGrad (Theano in the Theano environment, PyTensor in the modern one)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "lasagne_style_logreg.py"
REAL = Path(os.environ.get("AMSGRAD_REAL_DATA", REPO.parent / "shared" / "data"))
LIBRARIES = [pytest.param("theano", marks=pytest.mark.theano),
             pytest.param("pytensor", marks=pytest.mark.pytensor)]


def run_example(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    return subprocess.run([sys.executable, str(EXAMPLE), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"real data not found in {REAL}")
@pytest.mark.parametrize("library", LIBRARIES)
def test_trains_logreg_on_real_mnist(library):
    result = run_example("--library", library, "--data-dir", str(REAL), "--epochs", "2",
                         "--quiet")
    assert result.returncode == 0, result.stderr
    rows = re.findall(r"epoch (\d)/2  lr ([\d.]+)  loss ([\d.]+)  val_loss ([\d.]+)  "
                      r"val_acc ([\d.]+)", result.stdout)
    assert [r[:2] for r in rows] == [("1", "0.001000"), ("2", "0.000500")]
    (_, _, loss1, val_loss1, _), (_, _, loss2, val_loss2, acc2) = \
        [tuple(map(float, r)) for r in rows]
    assert loss2 < loss1 and val_loss2 < val_loss1
    assert 0.89 < acc2 < 0.95  # logreg on MNIST after two epochs


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_missing_data_directory_is_one_clear_error(tmp_path, library):
    result = run_example("--library", library, "--data-dir", str(tmp_path / "nowhere"),
                         "--no-download")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere" in lines[0]


def test_bad_arguments_are_rejected():
    result = run_example("--epochs", "0")
    assert result.returncode == 2 and "--epochs must be at least 1, got 0" in result.stderr
    result = run_example("--library", "tensorflow")
    assert result.returncode == 2 and "argument --library: invalid choice: 'tensorflow'" \
        in result.stderr


def run_blocked(blocked, *args):
    """The example with ``blocked`` libraries made unimportable (as where they are not
    installed)."""
    code = (f"import runpy, sys; sys.modules.update(dict.fromkeys({list(blocked)!r})); "
            f"sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    return subprocess.run([sys.executable, "-c", code, str(EXAMPLE), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not (REAL / "mnist" / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"real data not found in {REAL}")
@pytest.mark.pytensor
def test_by_default_it_runs_on_the_library_installed():
    # where Theano is not installed (the modern environment): PyTensor, not an ImportError
    result = run_blocked(["theano"], "--data-dir", str(REAL), "--epochs", "1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "pytensor: logistic regression on MNIST, AMSGrad"
    assert re.fullmatch(r"epoch 1/1  lr 0\.001000  loss [\d.]+  val_loss [\d.]+  "
                        r"val_acc 0\.\d+", result.stdout.splitlines()[1])


def test_without_either_library_it_says_what_to_install():
    for blocked, args, said in ((["theano", "pytensor"], [], "neither theano nor pytensor is"),
                                (["theano"], ["--library", "theano"], "theano is not")):
        result = run_blocked(blocked, *args, "--no-download")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr == (f"error: {said} installed in this Python "
                                 f"({sys.executable}); pip install -e '.[pytensor]', or use the "
                                 f"Theano environment of the README\n")
