"""`python -m stack run`: start the product and keep it running (see stack/supervisor.py);
`python -m stack upgrade`: deploy new code beside the running one (see stack/upgrade.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start restate-server, the model (if local) and "
                                                  "the worker; restart whatever dies; Ctrl-C stops it all")
    run_parser.add_argument("--nodes", type=int, choices=[1, 3], default=1,
                            help="restate-server nodes: 1 (restate.toml) or the cluster in cluster/")
    run_parser.add_argument("--workers", type=_positive, default=1,
                            help="worker processes serving each code version (default 1)")
    up = commands.add_parser("upgrade", help="serve the code in SOURCE as a new deployment beside "
                                             "the running one, then retire older ones as they drain")
    up.add_argument("--source", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the checkout whose app/ and sandbox/ to deploy (default: this one)")
    up.add_argument("--no-wait", action="store_true", help="return once the new version serves")
    args = parser.parse_args(argv)

    # Imported late: `--help` should not need the app's deps.
    if args.command == "upgrade":
        from stack.upgrade import upgrade

        return upgrade(args.source, wait=not args.no_wait)
    from stack.supervisor import run

    return run(args.nodes, args.workers)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
