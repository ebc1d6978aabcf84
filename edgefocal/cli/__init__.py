"""Command line: one module per command (Polygraphy's tool layout), each with `add_parser(sub)` and
`run(args) -> int`. This is the one place that prints errors and picks exit codes: 0 ok, 1 a gate or
regression failed, 2 bad input, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM, what CI sends on
cancel); any other exception is our bug and keeps its traceback."""
from __future__ import annotations

import argparse
import importlib
import sys

from edgefocal.errors import BadInput, EdgefocalError

COMMANDS = ("build", "compare", "matrix", "sensitivity", "doctor", "engine", "inspect", "predict", "profile", "history")


def _module(command: str):
    return importlib.import_module(f"edgefocal.cli.{command}")


class Parser(argparse.ArgumentParser):
    """argparse's own errors (an unknown choice, a missing value) as one-line BadInput naming the flag, exit 2,
    like every other bad input; subcommand parsers are of this class too (argparse uses the parent's type)."""

    def error(self, message: str):
        raise BadInput(f"{self.prog}: {message}", hint=f"see {self.prog} --help")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="edgefocal", description="A trained FocalNet in, verified edge artifacts out.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command")
    for command in COMMANDS:
        _module(command).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from edgefocal.signals import EXIT_SIGTERM, Terminated, sigterm_raises

    argv = sys.argv[1:] if argv is None else argv
    if not any(a in (*COMMANDS, "-h", "--help") for a in argv):
        # `python -m edgefocal [flags]` means `build [flags]`
        debug = ["--debug"] if "--debug" in argv else []
        argv = [*debug, "build", *[a for a in argv if a != "--debug"]]
    try:
        args = build_parser().parse_args(argv)
        with sigterm_raises():
            return _module(args.command).run(args)
    except EdgefocalError as e:
        if "--debug" in argv:
            raise
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Terminated:
        print("error: terminated (SIGTERM); nothing was written, the previous output is untouched", file=sys.stderr)
        return EXIT_SIGTERM
