"""`edgefocal doctor`: which targets this machine can build and run, and what to install if not."""
from __future__ import annotations


def add_parser(sub) -> None:
    sub.add_parser("doctor", help="which targets this machine can build and run")


def run(args) -> int:
    from rich.console import Console

    from edgefocal.doctor import render

    return render(Console())
