"""python -m bench [spine] [sandbox] [events]: run the benchmarks (all by default) and print markdown tables."""

from __future__ import annotations

import argparse
import time

from bench import events, sandbox, spine
from bench.common import CpuShare, load_average, machine, wait_for_quiet

PARTS = {"spine": spine.run, "sandbox": sandbox.run, "events": events.run}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"{' | '.join(PARTS)} (default: all)")
    parser.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                        help="before each part, wait up to S seconds for other processes to leave "
                        "the CPUs mostly idle (default 30)")
    args = parser.parse_args()
    chosen = args.parts or list(PARTS)
    if unknown := [p for p in chosen if p not in PARTS]:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    started = time.monotonic()
    print(f"## Benchmarks\n\n{machine()}\n", flush=True)
    for name in chosen:
        before = wait_for_quiet(args.quiet_wait)
        with CpuShare() as cpu:
            title, body = PARTS[name]()
        print(f"### {title}\n\n_Before it, {before}; {cpu.summary}._\n\n{body}\n", flush=True)
    print(f"_All parts took {time.monotonic() - started:.0f} s; load average at the end {load_average()}._")


if __name__ == "__main__":
    main()
