"""The ``dualstack-operator`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dualstack_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualstack-operator",
        description="Makes every Service in a namespace match its DualStackPolicy.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    run.add_argument("--metrics-port", type=int, default=8080, metavar="N")
    run.add_argument("--admission", action="store_true", help="serve the mutating webhook")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        print(
            "dualstack-operator: the reconciler is not implemented yet (see the issue tracker)",
            file=sys.stderr,
        )
        return 3
    return 2
