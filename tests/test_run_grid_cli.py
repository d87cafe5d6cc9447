"""scripts/run_grid.py as a user runs it: plans, and one error line for each mistake."""
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "run_grid.py")


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=120)


def assert_one_error_line(result, *fragments, stdout=""):
    """Exit 2 with one ``error:`` line holding ``fragments``; ``stdout`` exactly, or
    (a list) these lines first and one more starting with the last's text."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    if isinstance(stdout, list):
        *exact, start = stdout
        out = result.stdout.splitlines()
        assert out[:-1] == exact and out[-1].startswith(start), result.stdout
    else:
        assert result.stdout == stdout


def write(tmp_path, text, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """\
    name: tiny
    model: logreg
    epochs: 2
    grid:
      updater: [adam, amsgrad]
      learning_rate: [0.01, 0.001]
    seeds: 2
    """
#: GOOD's cost: 8 runs x 2 epochs of 391 x 128 training examples at 2 x 2 x 784 x 10
#: FLOP (forward, weight gradient) and 10 x 1024 validation examples at 2 x 784 x 10.
GOOD_COST = ("cost: 8 runs x 2 epochs: 27.7 GFLOP (training 25.1 GFLOP, validation 2.57 "
             "GFLOP; 2 FLOP per multiply-add, training about 3x forward)")


def test_dry_run_shows_the_plan(tmp_path):
    result = cli("configs/vgg.yaml", "--results", tmp_path, "--dry-run", "--only", "bc=off",
                 "--only", "seed=4")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"vgg: 12 runs in {tmp_path}/vgg: 0 done, 12 to do (12 new)"
    assert lines[1].startswith("cost: 12 runs x 150 epochs: 139 PFLOP (training 130 PFLOP, ")
    assert lines[2].startswith("time: ") and "precision highest" in lines[2]
    assert lines[3].split() == ["new", "adam_lr=0.01_b2=0.99_bc=off_seed=4"]
    assert len(lines) == 15
    assert os.listdir(tmp_path) == []


def test_epochs_and_set_epochs_plan_one_grid(tmp_path):
    by_flag, by_set = (cli("configs/logreg.yaml", "--results", tmp_path, "--dry-run", *how)
                       for how in (["--epochs", "3"], ["--set", "epochs=3"]))
    assert by_flag.returncode == 0, by_flag.stderr
    assert by_flag.stdout == by_set.stdout
    name = "logreg_epochs=3_543da7ab"  # overrides.derived_name: pinned, as every such name
    assert by_flag.stdout.startswith(f"{name}: 120 runs in {tmp_path}/{name}:")


@pytest.mark.parametrize("text, fragments", [
    (GOOD.replace("epochs: 2", "epoch: 2"),
     ["bad.yaml: key 'epoch': unknown key (did you mean 'epochs'?)"]),
    (GOOD.replace("[0.01, 0.001]", "[0.01, fast]"),
     ["bad.yaml: key 'grid.learning_rate': expected a number, got 'fast'"]),
    (GOOD.replace("[0.01, 0.001]", "[]"),
     ["bad.yaml: key 'grid.learning_rate': empty axis"]),
    (GOOD.replace("model: logreg", "model: resnet"),
     ["bad.yaml: key 'model': unknown model 'resnet'; choose from logreg, cifarnet"]),
    (GOOD.replace("model: logreg", "model: logreg\n    dataset: svhn"),
     ["bad.yaml: key 'dataset': unknown dataset 'svhn'"]),
    (GOOD.replace("[adam, amsgrad]", "[adam, amsgrd]"),
     ["bad.yaml: key 'grid.updater': unknown updater 'amsgrd' (did you mean 'amsgrad'?)"]),
    (GOOD.replace("seeds: 2", "seeds: [0, 1"),
     ["bad.yaml: line 8, column 1: bad YAML: "]),
])
def test_config_mistakes_give_one_line_and_exit_2(tmp_path, text, fragments):
    path = write(tmp_path, text)
    assert_one_error_line(cli(path, "--results", tmp_path / "results"), str(path), *fragments)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("args, fragment", [
    (["--only", "updatr=adam"], "--only 'updatr=adam': unknown key 'updatr' (did you mean "
                                "'updater'?)"),
    (["--only", "lr=0.5"], "--only 'lr=0.5': not in this grid; learning_rate is one of 0.01, "
                           "0.001"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer, got '0'"),
    (["--engine", "torch"], "argument --engine: invalid choice: 'torch'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--executor", "slurm"], "argument --executor: invalid choice: 'slurm'"),
    (["--address", "auto"], "--address, --num-gpus and --num-cpus need --executor ray"),
    (["--executor", "ray", "--num-gpus", "-1"],
     "argument --num-gpus: expected a number >= 0, got '-1'"),
    (["--executor", "ray", "--num-cpus", "0"],
     "argument --num-cpus: expected a number > 0, got '0'"),
    (["--max-attempts", "0"], "argument --max-attempts: expected a positive integer, got '0'"),
])
def test_argument_mistakes_give_one_line_and_exit_2(tmp_path, args, fragment):
    path = write(tmp_path, GOOD, "tiny.yaml")
    assert_one_error_line(cli(path, "--results", tmp_path / "r", *args), fragment)


def test_ray_executor_without_ray_is_one_line(tmp_path):
    # As where the .[ray] extra is not installed: importing ray fails.
    code = ("import runpy, sys; sys.modules['ray'] = None; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code, SCRIPT, str(write(tmp_path, GOOD)),
                             "--results", str(tmp_path / "r"), "--executor", "ray"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert_one_error_line(result, "--executor ray: Ray is not installed in this Python; "
                                  "pip install -e '.[ray]'",
                          stdout=f"tiny: 8 runs in {tmp_path}/r/tiny: 0 done, 8 to do (8 new)\n"
                          f"{GOOD_COST}\ntime: no estimate here (the executor's workers "
                          f"choose their devices)\n")
    assert not (tmp_path / "r").exists()


def test_missing_config_file(tmp_path):
    assert_one_error_line(cli(tmp_path / "nope.yaml"), "nope.yaml: no such config file")


def test_changed_grid_under_the_same_name_is_refused(tmp_path):
    results = tmp_path / "results"
    (results / "tiny").mkdir(parents=True)
    (results / "tiny" / "grid.yaml").write_text(
        "settings: {kind: train, axes: [updater, learning_rate], model: logreg, epochs: 5}\n")
    assert_one_error_line(cli(write(tmp_path, GOOD), "--results", results, "--dry-run"),
                          "holds a grid with other fixed settings", "epochs: 5 -> 2")


def test_unreadable_data_is_one_line_exit_2(tmp_path):
    data = tmp_path / "data" / "mnist"
    data.mkdir(parents=True)
    (data / "train-images-idx3-ubyte").write_bytes(b"not an IDX file")
    (data / "train-labels-idx1-ubyte").write_bytes(b"nor this")
    result = cli(write(tmp_path, GOOD), "--results", tmp_path / "r", "--data-dir",
                 tmp_path / "data", "--quiet")
    assert_one_error_line(result, "train-images-idx3-ubyte", "not an IDX file",
                          stdout=[f"tiny: 8 runs in {tmp_path}/r/tiny: 0 done, 8 to do (8 new)",
                                  GOOD_COST, "time: CPU "])
    assert not (tmp_path / "r").exists()  # nothing written before the data is there


def test_engine_that_is_not_installed(tmp_path):
    import importlib.util
    if importlib.util.find_spec("theano") is not None:
        pytest.skip("Theano is installed here")
    result = cli(write(tmp_path, GOOD, "tiny.yaml"), "--results", tmp_path / "r",
                 "--engine", "theano")
    assert_one_error_line(result, "--engine theano: theano is not installed in this Python",
                          stdout=f"tiny: 8 runs in {tmp_path}/r/tiny: 0 done, 8 to do (8 new)\n")


def test_synthetic_dry_run_and_misplaced_flags(tmp_path):
    result = cli("configs/synthetic.yaml", "--results", tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"synthetic: 1 run (4 lanes x 9,000,000 steps) in "
                             f"{tmp_path}/synthetic: to do\n")
    for flag in (["--only", "seed=0"], ["--log", "tensorboard"]):
        assert_one_error_line(cli("configs/synthetic.yaml", *flag), f"{flag[0]} applies to "
                              "training grids only (this is a synthetic config)")
    assert_one_error_line(cli("configs/synthetic.yaml", "--engine", "theano", "--epochs", "2"),
                          "--engine, --epochs apply to training grids only")
    assert_one_error_line(cli("configs/smoke.yaml", "--log", "tensorboard,mlflow"),
                          "argument --log: unknown metric log 'mlflow'; choose from "
                          "tensorboard, wandb")


def test_synthetic_config_runs_once_and_refuses_other_settings(tmp_path):
    config = write(tmp_path, "name: syn\nkind: synthetic\nsteps: 2020\nrecord_every: 101\n")
    results = tmp_path / "r"
    first = cli(config, "--results", results, "--quiet")
    assert first.returncode == 0, first.stderr
    status = (results / "syn" / "status.json").read_text()
    assert '"state": "finished"' in status
    # the runner draws the figure from the trajectories (the analysis layer's plot)
    assert (results / "syn" / "synthetic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (results / "syn" / "synthetic.pdf").read_bytes()[:5] == b"%PDF-"
    assert not [p.name for p in (results / "syn").iterdir() if p.name.endswith(".tmp")]
    again = cli(config, "--results", results)
    assert again.returncode == 0, again.stderr
    assert again.stdout.endswith(f"{results}/syn: done\n")
    assert (results / "syn" / "status.json").read_text() == status
    config.write_text(config.read_text().replace("2020", "3030"))
    assert_one_error_line(cli(config, "--results", results), "holds a run with other settings",
                          "steps: 2020 -> 3030")


# End to end, through the real trainer on real MNIST (a few seconds on one core).
REAL = os.environ.get("AMSGRAD_REAL_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
needs_mnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL, "mnist", "train-images-idx3-ubyte.gz")),
    reason=f"real MNIST not found in {REAL} (set AMSGRAD_REAL_DATA)")

TINY = """\
    name: tiny
    model: logreg
    epochs: {epochs}
    train_subset: 3000
    val_subset: 1000
    learning_rate: 0.001
    grid:
      updater: [adam, amsgrad]
    seeds: [3]
    """


def read_curves(run_dir):
    from experiments.results.store import RunStore
    return [{k: v for k, v in row.items() if k != "seconds"}
            for row in RunStore(run_dir).read_curves()]


@needs_mnist
@pytest.mark.slow
def test_smoke_grid_trains_for_real_and_then_has_nothing_to_do(tmp_path):
    config = write(tmp_path, TINY.format(epochs=2), "tiny.yaml")
    results = tmp_path / "results"
    first = cli(config, "--results", results, "--data-dir", REAL, "--quiet")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == "tiny: 2 trained, 0 failed; 2/2 done"
    grid = results / "tiny"
    assert sorted(os.listdir(grid)) == ["adam_seed=3", "amsgrad_seed=3", "grid.yaml"]
    for run in ("adam_seed=3", "amsgrad_seed=3"):
        assert sorted(os.listdir(grid / run)) == ["config.yaml", "curves.csv", "status.json"]
        curves = read_curves(grid / run)
        assert [r["lr"] for r in curves] == [0.001, 0.0005]  # linear decay over 2 epochs
        assert curves[1]["loss"] < curves[0]["loss"]
        assert 0.5 < curves[1]["val_acc"] <= 1.0
    mtimes = {p: os.stat(p).st_mtime_ns for p in grid.rglob("*")}
    again = cli(config, "--results", results, "--data-dir", REAL, "--quiet")
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"tiny: 2 runs in {grid}: 2 done (2 finished), 0 to do\n"
    assert {p: os.stat(p).st_mtime_ns for p in grid.rglob("*")} == mtimes


@needs_mnist
@pytest.mark.slow
def test_killed_grid_resumes_to_the_curves_of_an_uninterrupted_run(tmp_path):
    import json
    import signal
    import time
    epochs = 40
    config = write(tmp_path, TINY.format(epochs=epochs).replace("[adam, amsgrad]", "[amsgrad]"),
                   "tiny.yaml")
    killed = tmp_path / "killed"
    run_dir = killed / "tiny" / "amsgrad_seed=3"
    proc = subprocess.Popen([sys.executable, SCRIPT, str(config), "--results", str(killed),
                             "--data-dir", REAL, "--quiet"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 100
        while len(read_curves(run_dir)) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done_at_kill = len(read_curves(run_dir))
    assert 2 <= done_at_kill < epochs
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"

    plan = cli(config, "--results", killed, "--dry-run")
    lines = plan.stdout.splitlines()
    assert lines[1].startswith(f"cost: 1 run x {epochs - done_at_kill} epochs: ")  # those left
    assert lines[3].split()[0] == "partial"
    resumed = cli(config, "--results", killed, "--data-dir", REAL, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    reference = tmp_path / "reference"
    straight = cli(config, "--results", reference, "--data-dir", REAL, "--quiet")
    assert straight.returncode == 0, straight.stderr

    curves = read_curves(run_dir)
    assert len(curves) == epochs
    assert curves == read_curves(reference / "tiny" / "amsgrad_seed=3")  # bit for bit
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["trainings"] == 2
    assert not (run_dir / "checkpoint.npz").exists()


@needs_mnist
@pytest.mark.slow
def test_a_grid_an_earlier_epochs_flag_named_resumes_in_its_folder(tmp_path):
    # earlier versions put --epochs 1 into <name>_epochs=1 (run ids, config hashes and
    # grid.yaml name it): such a folder stays this experiment's, however it is asked for
    config = write(tmp_path, TINY.format(epochs=2), "tiny.yaml")
    results, old = tmp_path / "results", tmp_path / "results" / "tiny_epochs=1"
    made = cli(config, "--results", results, "--data-dir", REAL, "--quiet",
               "--set", "name=tiny_epochs=1", "--set", "epochs=1")
    assert made.returncode == 0, made.stderr
    files = {p: p.read_bytes() for p in old.rglob("*") if p.is_file()}
    for how in (["--epochs", "1"], ["--set", "epochs=1"]):
        again = cli(config, "--results", results, "--data-dir", REAL, "--quiet", *how)
        assert again.returncode == 0, again.stderr
        assert again.stdout == f"tiny_epochs=1: 2 runs in {old}: 2 done (2 finished), 0 to do\n"
    assert {p: p.read_bytes() for p in old.rglob("*") if p.is_file()} == files
    assert os.listdir(results) == ["tiny_epochs=1"]
    # without it, the derived name
    fresh = cli(config, "--results", tmp_path / "fresh", "--dry-run", "--epochs", "1")
    assert fresh.stdout.startswith("tiny_epochs=1_"), fresh.stdout
