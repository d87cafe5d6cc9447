"""The Ray executor on a local Ray cluster (started once for the module, 2 CPUs, every
server on 127.0.0.1): smoke.yaml as on the local executor, a killed worker, resource
requests, and a Ray runner next to a local runner on one results folder. Skipped where
Ray is not installed. A cluster of two nodes: tests/test_ray_cluster.py.
"""
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray")

import test_faults  # noqa: E402  (the toy engine; tests/ is on sys.path under pytest)
from namespaces import assert_on_loopback, descendants  # noqa: E402
from test_faults import REAL, needs_mnist  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "scripts", "run_grid.py")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster on 127.0.0.1; yields the address other drivers join it at."""
    from experiments.grid.ray_executor import start_local_ray
    tests = os.path.dirname(os.path.abspath(__file__))  # workers import the toy engine
    try:
        start_local_ray(num_cpus=2, include_dashboard=False, logging_level="ERROR",
                        log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": tests}})
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_the_test_cluster_is_on_loopback(cluster):
    assert cluster.startswith("127.0.0.1:")
    assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
    worker = ray.get(ray.remote(lambda: os.getpid()).remote())  # a worker is up too
    assert worker in descendants(os.getpid())
    assert_on_loopback(descendants(os.getpid()))  # GCS, raylet, workers, this driver


def test_a_ray_without_its_local_only_switch_is_refused(tmp_path, monkeypatch):
    # as a newer Ray that dropped the private constant start_local_ray flips: it would
    # bind to the host's address; refused before Ray starts (no cluster is needed here)
    from experiments.config import ConfigError
    from experiments.grid.ray_executor import KNOWN_RAY, start_local_ray
    from ray._private import ray_constants
    monkeypatch.delattr(ray_constants, "ENABLE_RAY_CLUSTER")
    running = ray.is_initialized()  # the module's cluster, if a test before started it
    with pytest.raises(ConfigError) as info:
        start_local_ray(num_cpus=1)
    assert str(info.value).startswith(
        f"--executor ray: Ray {ray.__version__} has no "
        f"ray._private.ray_constants.ENABLE_RAY_CLUSTER, which keeps the Ray this grid starts "
        f"on 127.0.0.1 (known for Ray {KNOWN_RAY}); start one yourself")
    assert ray.is_initialized() == running  # no Ray started
    # from the command: one line, exit 2, nothing written
    code = ("import runpy, sys; from ray._private import ray_constants as c; "
            "del c.ENABLE_RAY_CLUSTER; sys.argv = sys.argv[1:]; "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code, SCRIPT, "configs/smoke.yaml",
                           "--results", str(tmp_path / "r"), "--executor", "ray"],
                          capture_output=True, text=True, cwd=REPO, timeout=120, env=env)
    assert done.returncode == 2 and done.stderr.startswith("error: --executor ray: Ray ")
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


def join_env():
    """The environment of a driver joining the cluster (its auth settings included): in
    Ray's local-only mode too, or Ray maps 127.0.0.1 to this host's interface address,
    where the cluster does not listen."""
    return dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True,
                          text=True, cwd=REPO, timeout=300, env=join_env(), **kwargs)


def curves(run_dir):
    return test_faults.curves(run_dir)


@needs_mnist
@pytest.mark.slow
def test_smoke_on_ray_equals_the_local_executor(cluster, tmp_path):
    on_ray = cli("configs/smoke.yaml", "--results", tmp_path / "ray", "--data-dir", REAL,
                 "--executor", "ray", "--address", cluster)
    assert on_ray.returncode == 0, on_ray.stderr
    lines = on_ray.stdout.splitlines()
    assert lines[0] == f"smoke: 4 runs in {tmp_path}/ray/smoke: 0 done, 4 to do (4 new)"
    assert lines[-1] == "smoke: 4 trained, 0 failed; 4/4 done"
    assert lines[1].startswith("cost: 4 runs x 2 epochs: ")
    assert lines[2] == "time: no estimate here (the executor's workers choose their devices)"
    assert len(lines) == 13 and all(line.startswith("finished ") for line in lines[3:7])
    assert lines[7].startswith("best setting of each rule")  # then 2 rules, 2 commands
    assert not {"\r", "\x1b"} & set(on_ray.stdout + on_ray.stderr)  # a plain log
    from experiments.config import load_config
    from experiments.grid.runner import run_grid
    local = run_grid(load_config(os.path.join(REPO, "configs", "smoke.yaml")),
                     results_dir=str(tmp_path / "local"), data_dir=REAL, quiet=True,
                     out=io.StringIO())
    assert len(local["trained"]) == 4
    for rid in local["trained"]:
        ray_run, local_run = tmp_path / "ray" / "smoke" / rid, tmp_path / "local" / "smoke" / rid
        assert curves(ray_run) == curves(local_run)  # bit for bit
        assert len(curves(ray_run)) == 2
        assert sorted(os.listdir(ray_run)) == ["config.yaml", "curves.csv", "status.json"]
        assert json.loads((ray_run / "status.json").read_text())["trainings"] == 1
    again = cli("configs/smoke.yaml", "--results", tmp_path / "ray", "--executor", "ray",
                "--address", cluster)
    assert again.returncode == 0 and again.stdout.endswith("4 done (4 finished), 0 to do\n")


@needs_mnist
@pytest.mark.slow
def test_auto_groups_and_metric_logs_on_a_worker(cluster, tmp_path):
    """The default group size is chosen on the worker's device (its CPU: logreg's four
    runs in one group, one task), and the worker writes the TensorBoard events."""
    pytest.importorskip("tensorboardX")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from experiments.config import load_config
    from experiments.grid.runner import run_grid
    summary = run_grid(load_config(os.path.join(REPO, "configs", "smoke.yaml")),
                       results_dir=str(tmp_path), data_dir=REAL, quiet=True, out=io.StringIO(),
                       executor="ray", metric_log=("tensorboard",))
    assert len(summary["trained"]) == 4 and not summary["failed"]
    for rid in summary["trained"]:
        run_dir = tmp_path / "smoke" / rid
        status = json.loads((run_dir / "status.json").read_text())
        assert status["engine_info"]["group_size"] == 4
        events = EventAccumulator(str(run_dir))
        events.Reload()
        assert [(e.step, e.value) for e in events.Scalars("val_loss")] == [
            (r["epoch"], pytest.approx(r["val_loss"], rel=1e-6)) for r in curves(run_dir)]


@needs_mnist
@pytest.mark.slow
def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(cluster, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text("name: tiny\nmodel: logreg\nepochs: 40\ntrain_subset: 3000\n"
                      "val_subset: 1000\nlearning_rate: 0.001\ngrid:\n  updater: [amsgrad]\n"
                      "seeds: [3]\n")
    run_dir = tmp_path / "ray" / "tiny" / "amsgrad_seed=3"
    driver = subprocess.Popen(
        [sys.executable, SCRIPT, str(config), "--results", str(tmp_path / "ray"), "--data-dir",
         REAL, "--quiet", "--executor", "ray", "--address", cluster], env=join_env(),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while driver.poll() is None and time.time() < deadline and not (
                (run_dir / "checkpoint.npz").exists() and len(curves(run_dir)) >= 3):
            time.sleep(0.005)
        worker = json.loads((run_dir / "claim.json").read_text())["pid"]
        assert worker != driver.pid
        os.kill(worker, signal.SIGKILL)
        out, err = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert driver.returncode == 0, err
    assert "took the run over from" in err and f"process {worker}, is dead" in err
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "finished" and status["trainings"] == 2
    reference = cli(config, "--results", tmp_path / "local", "--data-dir", REAL, "--quiet")
    assert reference.returncode == 0, reference.stderr
    assert curves(run_dir) == curves(tmp_path / "local" / "tiny" / "amsgrad_seed=3")


def resource_train(run, store, on_epoch=None, **kwargs):
    """Writes two epochs of curves and what Ray gave the task."""
    assigned = ray.get_runtime_context().get_assigned_resources()
    rows = []
    for epoch in range(1, run["epochs"] + 1):
        rows.append({"epoch": epoch, "lr": run["learning_rate"], "loss": 1.0})
        store.write_curves(rows)
        on_epoch(rows[-1])
    return store.update_status(state="finished", assigned=assigned, pid=os.getpid())


def test_each_task_asks_for_the_configured_resources(cluster, tmp_path):
    from experiments.config import parse_config
    from experiments.grid.runner import run_grid
    data = {"name": "res", "model": "logreg", "epochs": 2, "grid": {"updater": ["adam"]},
            "seeds": [0, 1], "resources": {"num_cpus": 2}}
    config = parse_config(data, path="res.yaml")
    for results, num_cpus, expected in (("config", None, 2.0), ("cli", 0.5, 0.5)):
        summary = run_grid(config, results_dir=str(tmp_path / results), quiet=True,
                           out=io.StringIO(), executor="ray", num_cpus=num_cpus,
                           train_fn=resource_train, load_fn=test_faults.toy_dataset)
        assert sorted(summary["trained"]) == ["adam_seed=0", "adam_seed=1"]
        for rid in summary["trained"]:
            status = json.loads((tmp_path / results / "res" / rid / "status.json").read_text())
            assert status["assigned"] == {"CPU": expected}
            assert status["pid"] != os.getpid()  # trained in a Ray worker


def toy_train(run, store, **kwargs):
    """The real trainer with the toy engine (0.2 s an epoch), in a Ray worker."""
    import experiments.training
    os.environ["TOY_EPOCH_SECONDS"] = "0.2"
    return experiments.training.train_run(run, store, **dict(kwargs, engine="toy"))


def test_ray_runner_and_local_runner_share_a_results_folder(cluster, tmp_path):
    from experiments.config import load_config
    from experiments.grid.runner import run_grid
    config_path = test_faults.toy_config(tmp_path, epochs=4, seeds="[0, 1, 2, 3, 4]")
    reference = test_faults.toy_run(config_path, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    results = tmp_path / "shared"  # 10 runs of 0.8 s: enough for both to get some
    env = dict(os.environ, TOY_EPOCH_SECONDS="0.2")
    local = subprocess.Popen(test_faults.toy_cmd(config_path, results), env=env, cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        summary = run_grid(load_config(config_path), results_dir=str(results), quiet=True,
                           out=io.StringIO(), executor="ray", train_fn=toy_train,
                           load_fn=test_faults.toy_dataset)
    finally:
        out, err = local.communicate(timeout=120)
    assert local.returncode == 0, err
    local_trained = int(out.splitlines()[-1].split(": ")[1].split()[0])
    assert summary["failed"] == []
    assert len(summary["trained"]) + local_trained == 10  # each run trained once ...
    assert len(summary["trained"]) >= 1 and local_trained >= 1  # ... by one or the other
    for rid, run_dir in test_faults.run_dirs(results).items():
        status = test_faults.status(run_dir)
        assert status["trainings"] == 1 and status["state"] == "finished"
        assert curves(run_dir) == curves(tmp_path / "reference" / "toy" / rid)


def full_disk_train(run, store, **kwargs):
    """Meets a full disk at its first write, in a Ray worker."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_on_a_worker_stops_the_grid_as_it_would_here(cluster, tmp_path):
    from experiments.config import parse_config
    from experiments.grid.runner import run_grid
    config = parse_config({"name": "full", "model": "logreg", "epochs": 2,
                           "grid": {"updater": ["adam"]}, "seeds": [0]}, path="full.yaml")
    with pytest.raises(OSError) as caught:  # scripts/run_grid.py: one line, exit 3
        run_grid(config, results_dir=str(tmp_path), quiet=True, out=io.StringIO(),
                 executor="ray", train_fn=full_disk_train, load_fn=test_faults.toy_dataset)
    assert caught.value.errno == errno.ENOSPC
    run_dir = tmp_path / "full" / "adam_seed=0"
    assert json.loads((run_dir / "status.json").read_text())["attempts"] == 1
    assert "error" not in (run_dir / "status.json").read_text()  # not the run's failure
    assert sorted(os.listdir(run_dir)) == ["config.yaml", "status.json"]  # claim released


def argv_train(run, store, **kwargs):
    """The real trainer (toy engine) in a Ray worker, which notes its own command line."""
    status = toy_train(run, store, **kwargs)
    return store.update_status(worker_argv=sys.argv, pid=os.getpid()) or status


def test_a_ray_task_records_the_drivers_command_line(cluster, tmp_path):
    from experiments.training import provenance
    from experiments.config import load_config
    from experiments.grid.runner import run_grid
    config_path = test_faults.toy_config(tmp_path, epochs=2)
    summary = run_grid(load_config(config_path), results_dir=str(tmp_path), quiet=True,
                       out=io.StringIO(), executor="ray", train_fn=argv_train,
                       load_fn=test_faults.toy_dataset)
    assert sorted(summary["trained"]) == ["adam_seed=0", "amsgrad_seed=0"]
    driver = provenance.command_line()  # this process's: pytest's
    for run_dir in test_faults.run_dirs(tmp_path).values():
        status = test_faults.status(run_dir)
        assert status["pid"] != os.getpid() and status["worker_argv"] != sys.argv
        assert (status["command"], status["cwd"]) == (driver["command"], driver["cwd"])
        assert status["versions"]["numpy"] == provenance.library_versions()["numpy"]


def noisy_train(run, store, **kwargs):
    """toy_train, saying something on the Ray worker's stderr first."""
    print(f"a line from the worker for {run['run_id']}", file=sys.stderr, flush=True)
    os.environ["TOY_EPOCH_SECONDS"] = "0.5"  # time for Ray to forward the line
    return toy_train(run, store, **kwargs)


def test_a_ray_grid_logged_to_a_file_has_no_control_codes(cluster, tmp_path):
    config = test_faults.toy_config(tmp_path, epochs=3)
    driver = ("import sys, test_faults, test_ray_executor as t\n"
              "from experiments.config import load_config\n"
              "from experiments.grid.runner import run_grid\n"
              "run_grid(load_config(sys.argv[1]), results_dir=sys.argv[2], executor='ray',\n"
              "         address=sys.argv[3], train_fn=t.noisy_train,\n"
              "         load_fn=test_faults.toy_dataset)\n")
    tests = os.path.dirname(os.path.abspath(__file__))  # the workers' sys.path has it
    env = dict(join_env(), PYTHONPATH=os.pathsep.join([REPO, tests]))
    env.pop("RAY_COLOR_PREFIX", None)  # as a user's shell has it (a driver here sets it)
    done = subprocess.run([sys.executable, "-c", driver, str(config), str(tmp_path / "r"),
                           cluster], capture_output=True, text=True, cwd=tests, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr
    log = done.stdout + done.stderr
    assert "a line from the worker for adam_seed=0" in log  # forwarded by Ray ...
    assert "\x1b" not in log and "\r" not in log, repr(log)  # ... without colour codes
    assert done.stdout.splitlines()[-1] == "toy: 2 trained, 0 failed; 2/2 done"
