"""The project's imports point one way, and its files and functions stay small.

Every import of every module of ``amsgrad`` and ``experiments`` is read from its source
(those inside functions too), resolved, and checked against the layers of
``docs/architecture.md``: a module imports its own layer and the layers below it, never
one above; ``analysis`` stands beside the pipeline and reads only the layers below
``engines``; nothing imports the commands. The import graph has no circle. A source
file over 400 lines, or a function over 60 lines of code (docstring left out), needs a
comment ``# length: <why>`` (the file's within its first lines, a function's on the line
above its ``def``).
"""
import ast
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("amsgrad", "experiments")

#: (module prefix, layer), the longest prefix deciding; lower layers lie below.
LAYERS = (
    ("amsgrad", 0),
    ("experiments", 0),  # the package's __init__: imports nothing
    ("experiments.config.checks", 1),
    ("experiments.optimizers", 2), ("experiments.data", 2), ("experiments.models", 2),
    ("experiments.results", 2),
    ("experiments.config", 3),
    ("experiments.engines", 4),
    ("experiments.training", 5), ("experiments.synthetic", 5),
    ("experiments.grid", 6),
    ("experiments.analysis", 6),
    ("experiments.cli", 7), ("experiments.benchmarks", 7),
)
#: analysis stands beside grid/training/engines: it reads results, never trains.
BESIDE = {"experiments.analysis": ("experiments.engines", "experiments.training",
                                   "experiments.synthetic", "experiments.grid")}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def _modules():
    """``{module name: path}`` of every source file of the packages."""
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _resolve(name, module, level, is_package):
    """The absolute module of ``from <level dots><name>`` inside ``module``."""
    if not level:
        return name
    base = module.split(".")
    base = base[:len(base) - level + (1 if is_package else 0)]
    return ".".join(base + ([name] if name else []))


def _project(name):
    """The project module ``name`` names (a module, or the package holding a name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module):
    """``[(imported module, line, inside a function)]`` of ``module``'s project imports."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = _resolve(child.module or "", module, child.level, is_package)
                names = [f"{base}.{a.name}" for a in child.names] + [base]
            else:
                visit(child, inside)
                continue
            targets = {_project(n) for n in names} - {None, module}
            found.extend((t, child.lineno, inside) for t in sorted(targets)
                         if not module.startswith(t + "."))  # a package's own __init__
    visit(tree, False)
    return found


def layer(module):
    prefix = max((p for p, _ in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return dict(LAYERS)[prefix], prefix


def test_every_import_points_down_or_sideways():
    wrong = []
    for module in MODULES:
        rank, prefix = layer(module)
        for target, line, _ in imports(module):
            target_rank, target_prefix = layer(target)
            beside = any(target == b or target.startswith(b + ".")
                         for b in BESIDE.get(prefix, ()))
            if target_rank > rank or beside or (target_prefix == "experiments.cli"
                                                and prefix != "experiments.cli"):
                wrong.append(f"{MODULES[module].relative_to(REPO)}:{line}: {module} "
                             f"(layer {rank}) imports {target} (layer {target_rank})")
    assert not wrong, "\n".join(wrong)


def test_the_import_graph_has_no_circle():
    graph = {m: {t for t, _, _ in imports(m)} for m in MODULES}
    state, path = {}, []

    def walk(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = "done"
    for module in sorted(graph):
        if module not in state:
            walk(module)


def _reason(lines, index):
    return index > 0 and lines[index - 1].strip().startswith("# length:")


def test_no_file_or_function_is_long_without_a_reason():
    long = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        if len(lines) > MAX_FILE_LINES and not any(
                line.startswith("# length:") for line in lines[:40]):
            long.append(f"{path.relative_to(REPO)}: {len(lines)} lines")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body = body[1:]
            if not body:
                continue
            length = body[-1].end_lineno - body[0].lineno + 1
            first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            if length > MAX_FUNCTION_LINES and not _reason(lines, first):
                long.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.name}: "
                            f"{length} lines of code")
    assert not long, "\n".join(long)


def test_the_layers_cover_every_module():
    assert {layer(m)[1] for m in MODULES} >= {p for p, _ in LAYERS if p in MODULES}
    unplaced = [m for m in MODULES if m.startswith("experiments.")
                and layer(m)[1] == "experiments"]
    assert not unplaced, unplaced


if __name__ == "__main__":  # the imports inside functions, with where they are
    for module in MODULES:
        for target, line, inside in imports(module):
            if inside:
                print(f"{os.path.relpath(MODULES[module], REPO)}:{line}: {target}")
