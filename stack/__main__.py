"""`python -m stack run`: start the product and keep it running (see stack/supervisor.py)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start restate-server, the model (if local) and the worker; "
                                    "restart whatever dies; Ctrl-C stops it all")
    parser.parse_args(argv)

    from stack.supervisor import run  # imported late: `--help` should not need the app's deps

    return run()


if __name__ == "__main__":
    sys.exit(main())
