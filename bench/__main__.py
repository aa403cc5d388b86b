"""``python -m bench``: the whole suite, the same as ``propylon bench`` (see ``--help``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.suite import BENCHMARKS, DEFAULT_OUTPUT, run_cli


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=None, help=f"comma-separated: {','.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    command = " ".join(["python -m bench", *sys.argv[1:]])
    run_cli(only, quick=args.quick, output=args.output, data_dir=args.data_dir, command=command)


if __name__ == "__main__":
    main()
