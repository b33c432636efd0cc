"""The ``gagnet`` command. It only parses arguments and calls library functions."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .config import PRESETS


def cmd_info(args: argparse.Namespace) -> int:
    """Print parameters, MACs, receptive field, latency and causality of configurations."""
    from .complexity import complexity

    names = args.config or ["paper", "causal"]
    reports = [complexity(n) for n in names]
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        print("\n\n".join(r.table() for r in reports))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gagnet", description="GaGNet speech enhancement toolkit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="parameters, MACs, receptive field, latency and causality")
    p.add_argument("--config", action="append", choices=sorted(PRESETS), help="preset (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_info)

    from . import benchmark, enhance, evaluate, export, live, stream_cli, train
    from .data import pack, synthetic

    enhance.register(sub)
    stream_cli.register(sub)
    live.register(sub)
    export.register(sub)
    evaluate.register(sub)
    benchmark.register(sub)
    train.register(sub)
    synthetic.register(sub)
    pack.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
