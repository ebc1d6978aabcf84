"""`edgefocal history DIR --output OUT`: the accepted builds' figures over time (OUT/history.md, history.html)
and drift: over the last --window builds, a figure that moved beyond its regression bound in small steps
that each passed. Exit 0 no drift, 1 drift, 2 bad input (edgefocal/history.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub) -> None:
    from edgefocal.history import DEFAULT_WINDOW

    p = sub.add_parser("history", help="trend charts of the accepted builds' report.json files; exit 1 on drift",
                       description=__doc__)
    p.add_argument("directory", type=Path, help="the accepted reports: DIR/*.json or DIR/*/report.json "
                   "(a manifest.json beside a report.json dates it)")
    p.add_argument("--output", type=Path, required=True, help="where history.md and history.html go")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                   help=f"check drift between the oldest and newest of the last N builds (default {DEFAULT_WINDOW})")
    p.add_argument("--bound-file", type=Path, metavar="RECIPE",
                   help="take the bounds from this recipe's gates (default: the built-in gate defaults)")


def run(args: argparse.Namespace) -> int:
    from edgefocal.history import make_history, write
    from edgefocal.recipe import Gates, load_recipe

    gates = load_recipe(args.bound_file).gates if args.bound_file else Gates()
    history = make_history(args.directory, args.window, gates)
    md, page = write(history, args.output)
    for d in history.drifts:
        print(d.describe())
    for note in history.notes:
        print(f"note: {note}")
    print(f"{len(history.builds)} builds, {len(history.artifacts)} requested artifacts: wrote {md} and {page}")
    if history.drifts:
        print(f"error: {len(history.drifts)} figure(s) drifted beyond their regression bound over the last "
              f"{len(history.in_window)} builds", file=sys.stderr)
    return history.exit_code
