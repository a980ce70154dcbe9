"""Entry point of the ``dubline`` console script.

Commands are plain modules listed in ``COMMANDS``; each defines ``add_parser(subparsers)``
which registers its arguments and sets ``func(args) -> int``. Commands call the engine
pipeline and hold no logic of their own. Building the parser imports every command module, so
those import the pipeline (torch, dlib, the models) inside ``run``: ``dubline --help`` and
``dubline probe`` start in well under a second instead of loading every stage first.

Every way out is one line on stderr: an engine error or an OS error exits 2; SIGINT, SIGTERM and
SIGHUP all unwind like Ctrl-C (temporary files removed by the writers' own cleanup) and exit
128 + the signal's number; anything unexpected is one line too (the traceback with ``-v``), exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from typing import NoReturn

from dubline import __version__
from dubline.core.errors import DublineError

#: Signals that stop a command the way Ctrl-C does (``serve`` installs its own, to drain jobs).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SignalStop(KeyboardInterrupt):
    """A stop signal, raised in the main thread so every ``finally`` and ``except BaseException``
    on the way out runs exactly as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _install_stop_handlers() -> dict[int, object]:
    """Install the handlers; returns the previous ones (empty off the main thread, where Python
    cannot set handlers: an embedding caller keeps its own)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: object) -> None:
        # Once unwinding, further signals are ignored so the cleanup itself is not cut short.
        for other in STOP_SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        raise SignalStop(signum)

    return {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}


COMMANDS = ["probe", "analyse", "render", "qc", "demo", "serve", "submit", "status", "otio", "batch"]


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line too (``dubline render: error: ...``, exit 2);
    ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="dubline", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dubline {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dubline.apps.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(  # warnings only by default: a failed command prints one line
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    previous = _install_stop_handlers()
    try:
        return int(args.func(args) or 0)
    except DublineError as error:
        print(f"dubline {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # one the command did not name itself: say which file
        from dubline.core.paths import os_reason

        where = f"{error.filename}: " if error.filename else ""
        print(f"dubline {args.command}: error: {where}{os_reason(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        signum = interrupt.signum if isinstance(interrupt, SignalStop) else signal.SIGINT
        print(f"dubline {args.command}: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except Exception as error:  # a bug: still one line, the traceback only when asked for
        logging.getLogger("dubline").debug("unexpected error", exc_info=True)
        print(f"dubline {args.command}: internal error ({type(error).__name__}): {_one_line(error)}"
              f"{'' if args.verbose else ' (run with -v for the traceback)'}", file=sys.stderr)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
