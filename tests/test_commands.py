"""The installed commands ([project.scripts]) and the scripts/ wrappers run the same code."""
import importlib
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COMMANDS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
WRAPPERS = {"amsgrad-grid": "run_grid", "amsgrad-plot": "plot", "amsgrad-report": "report",
            "amsgrad-benchmark": "benchmark"}


def test_every_command_has_a_wrapper_and_a_main():
    assert set(COMMANDS) == set(WRAPPERS)
    for command, target in COMMANDS.items():
        module, _, function = target.partition(":")
        assert module == f"experiments.cli.{WRAPPERS[command]}" and function == "main"
        assert callable(getattr(importlib.import_module(module), function))
        wrapper = (REPO / "scripts" / f"{WRAPPERS[command]}.py").read_text()
        assert f"from {module} import main" in wrapper


def _run(argv, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)


@pytest.mark.parametrize("command", sorted(WRAPPERS))
def test_installed_command_is_the_script(command, tmp_path):
    installed = Path(sys.executable).parent / command  # pip puts it next to python
    assert installed.exists(), f"{command} is not installed: pip install -e ."
    script = REPO / "scripts" / f"{WRAPPERS[command]}.py"
    args = {"amsgrad-grid": [str(REPO / "configs" / "smoke.yaml"), "--dry-run",
                             "--results", str(tmp_path / "r")],
            "amsgrad-plot": [str(tmp_path / "nothing")],
            "amsgrad-report": [str(tmp_path / "nothing")],
            "amsgrad-benchmark": []}[command]
    by_command = _run([str(installed), *args], tmp_path)
    by_script = _run([sys.executable, str(script), *args], tmp_path)
    assert by_command.returncode == by_script.returncode
    assert by_command.stdout == by_script.stdout
    # messages name the program as it was called
    assert by_command.stderr.replace(command, "X") == \
        by_script.stderr.replace(script.name, "X").replace(str(script), "X")
    if command == "amsgrad-grid":
        assert by_command.returncode == 0 and "smoke" in by_command.stdout


@pytest.mark.parametrize("command", sorted(WRAPPERS))
def test_help_names_the_command_as_called(command, tmp_path):
    installed = Path(sys.executable).parent / command
    script = REPO / "scripts" / f"{WRAPPERS[command]}.py"
    for argv, name in (([str(installed)], command), ([sys.executable, str(script)], script.name)):
        shown = _run([*argv, "--help"], tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith(f"usage: {name} "), shown.stdout[:80]
        other = script.name if name == command else command
        assert f"usage: {other}" not in shown.stdout


def test_grid_help_examples_use_the_name_as_called(tmp_path):
    installed = Path(sys.executable).parent / "amsgrad-grid"
    script = REPO / "scripts" / "run_grid.py"
    by_command = _run([str(installed), "--help"], tmp_path).stdout
    by_script = _run([sys.executable, str(script), "--help"], tmp_path).stdout
    assert "amsgrad-grid configs" not in by_script
    assert "python scripts/run_grid.py configs/vgg.yaml" in by_script
    assert "amsgrad-grid configs/vgg.yaml" in by_command
    assert "scripts/run_grid.py" not in by_command


EXTRAS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _packages(extra):
    """The distribution names an extra installs, its own extras followed."""
    import re
    names = set()
    for requirement in EXTRAS[extra]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
        inner = re.match(r"amsgrad-experiments\[([^\]]+)\]", requirement)
        names |= set().union(*(_packages(e) for e in inner.group(1).split(","))) \
            if inner else {name}
    return names


def test_extras_mean_what_they_say():
    from experiments.training import metric_logs
    assert {"tensorboardx", "tensorboard"} <= _packages("tensorboard")
    assert _packages("pytensor") == {"pytensor"} and _packages("wandb") == {"wandb"}
    assert _packages("test") == {"pytest", "scipy", "pillow"}
    for kind, (module, extra) in metric_logs.KINDS.items():  # --log's hint names its extra
        assert module.lower() in _packages(extra), kind
    # every optional part the tests exercise is installed by CI's modern environment ...
    ci = (REPO / ".ci" / "run").read_text()
    assert '-e ".[dev]"' in ci
    assert {"pytensor", "tensorboard", "tensorboardx", "wandb", "pandas", "ray",
            "pytest"} <= _packages("dev")
    # ... and the metric logs in its Theano environment
    assert '-e ".[theano,tensorboard,wandb]"' in ci


def test_every_extra_named_anywhere_exists():
    import re
    texts = [REPO / "README.md", REPO / ".ci" / "run", *(REPO / "experiments").rglob("*.py"),
             *(REPO / "docs").rglob("*.md"), *(REPO / "examples").rglob("*.py")]
    named = {(path.name, extra) for path in texts
             for group in re.findall(r"\.\[([a-z0-9_,-]+)\]", path.read_text())
             for extra in group.split(",")}
    assert named and not {(f, e) for f, e in named if e not in EXTRAS}
