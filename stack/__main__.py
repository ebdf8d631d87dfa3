"""`python -m stack run`: start the product and keep it running (see stack/supervisor.py);
`python -m stack upgrade`: deploy new code beside the running one (see stack/upgrade.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start restate-server, the model (if local) and the worker; "
                                    "restart whatever dies; Ctrl-C stops it all")
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

    return run()


if __name__ == "__main__":
    sys.exit(main())
