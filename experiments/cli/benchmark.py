"""Benchmarks: ``benchmark.py MODE [options]`` (installed: ``amsgrad-benchmark MODE``);
``--help`` lists the modes, and the command alone lists them as a usage error.

Each mode is a module ``experiments/benchmarks/<mode>.py`` with ``add_arguments(parser)``
and ``run(args)``; only the chosen one is imported. Messages name the command as it was
called.
"""
import argparse
import ast
import importlib
import os
import pkgutil
import sys
from pathlib import Path

import experiments.benchmarks as modes_package


def available_modes():
    """``{mode: first line of its docstring}``, read without importing the modes."""
    modes = {}
    for info in pkgutil.iter_modules(modes_package.__path__):
        path = Path(modes_package.__path__[0]) / f"{info.name}.py"
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        except (OSError, SyntaxError):
            doc = ""
        modes[info.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    return modes


def _program():
    """The name the user called: amsgrad-benchmark installed, benchmark.py from a checkout."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name in ("amsgrad-benchmark", "benchmark.py") else "benchmark.py"


def usage(modes, prog=None):
    prog = prog or _program()
    lines = [f"usage: {prog} MODE [options]   ({prog} MODE --help for options)",
             "", "modes:"]
    lines += [f"  {name:12s}{doc}" for name, doc in sorted(modes.items())]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    modes, prog = available_modes(), _program()
    if not argv or argv[0] in ("-h", "--help"):
        # asked for: the answer, on stdout; a missing mode: a usage error, on stderr
        print(usage(modes, prog), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    mode = argv[0]
    if mode not in modes:
        print(f"{prog}: unknown mode {mode!r} (available: {', '.join(sorted(modes))})",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"experiments.benchmarks.{mode}")
    parser = argparse.ArgumentParser(prog=f"{prog} {mode}", description=module.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv[1:])) or 0


if __name__ == "__main__":
    sys.exit(main())
