"""Entry point of the ``dubline`` console script.

Commands are plain modules listed in ``COMMANDS``; each defines ``add_parser(subparsers)``
which registers its arguments and sets ``func(args) -> int``. Commands call the engine
pipeline and hold no logic of their own. Building the parser imports every command module, so
those import the pipeline (torch, dlib, the models) inside ``run``: ``dubline --help`` and
``dubline probe`` start in well under a second instead of loading every stage first.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from dubline import __version__
from dubline.core.errors import DublineError

COMMANDS = ["probe", "analyse", "render", "qc", "demo", "serve", "submit", "status", "otio", "batch"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dubline", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dubline {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dubline.apps.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except DublineError as error:
        print(f"dubline {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dubline {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
