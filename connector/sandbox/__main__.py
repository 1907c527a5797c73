"""`python -m connector.sandbox --port N`: the sandbox without the connector's CLI."""

from __future__ import annotations

import argparse
import sys

from connector.sandbox import command


def main(argv: list[str] | None = None) -> int:
    """Parse flags and serve until SIGTERM/SIGINT (tests start this as a subprocess)."""
    parser = argparse.ArgumentParser(
        prog="python -m connector.sandbox",
        description="Local Gameball-compatible API for demos and tests. NOT Gameball.")
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
