"""Run every ``benchmarks/bench_*.py`` module (or those named on the command line).

Usage: ``python -m benchmarks [--device cuda] [name ...]`` where a name is e.g. ``optimizers``
for ``bench_optimizers.py``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import torch

import benchmarks
from benchmarks._timing import single_thread, use_device


def main(argv: list[str]) -> None:
    names = sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--device", default="cpu", help="where the workloads run (default cpu)")
    parser.add_argument("names", nargs="*", choices=[[], *names], metavar="name", help=str(names))
    args = parser.parse_args(argv)
    single_thread()
    use_device(args.device)
    label = torch.cuda.get_device_name() if args.device.startswith("cuda") else "1 thread"
    print(f"device: {args.device} ({label})")
    for name in args.names or names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"\n# benchmarks/bench_{name}.py")
        module.main()


if __name__ == "__main__":
    main(sys.argv[1:])
