"""Run every benchmark (``bench/bench_*.py``, each with a ``main()``): ``python -m bench [name ...]``.

Benchmarks print ratios measured in one run against a baseline; this machine is shared and noisy,
so absolute times mean little and no benchmark fails a build.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path


def main() -> int:
    wanted = set(sys.argv[1:])
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    failures = 0
    for name in names:
        if wanted and name not in wanted and name.removeprefix("bench_") not in wanted:
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception:
            failures += 1
            traceback.print_exc()
        print(f"({name} took {time.perf_counter() - started:.1f} s)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
