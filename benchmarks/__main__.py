"""Run every ``benchmarks/bench_*.py`` module (or those named on the command line).

Usage: ``python -m benchmarks [name ...]`` where a name is e.g. ``optimizers`` for
``bench_optimizers.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks
from benchmarks._timing import single_thread


def main(argv: list[str]) -> None:
    single_thread()
    names = sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )
    chosen = argv or names
    for name in chosen:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n# benchmarks/bench_{name}.py")
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
