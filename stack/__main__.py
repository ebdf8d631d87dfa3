"""`python -m stack run`: start the product and keep it running (see stack/supervisor.py)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack")
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="start restate-server, the model (if local) and "
                                                  "the worker; restart whatever dies; Ctrl-C stops it all")
    run_parser.add_argument("--nodes", type=int, choices=[1, 3], default=1,
                            help="restate-server nodes: 1 (restate.toml) or the cluster in cluster/")
    run_parser.add_argument("--workers", type=_positive, default=1,
                            help="worker processes serving the one deployment (default 1)")
    args = parser.parse_args(argv)

    from stack.supervisor import run  # imported late: `--help` should not need the app's deps

    return run(args.nodes, args.workers)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


if __name__ == "__main__":
    sys.exit(main())
