"""``make bench [BENCH=name,...]``: run the benchmarks, each against a baseline measured in the same run."""

from __future__ import annotations

import argparse
import importlib
import time

BENCHMARKS = ("serving", "near_dup", "training", "logpath", "soak", "retrieval", "pii", "drift")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)")
    names = parser.parse_args().names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.monotonic()
        importlib.import_module(f"tests.bench.{name}").run()
        print(f"({name}: {time.monotonic() - started:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
