"""`edgefocal matrix RECIPE...`: models × targets × precisions in one command, resumable, into one table,
matrix.json and one JUnit file (edgefocal/matrix.py)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    m = sub.add_parser("matrix", help="build many recipes, resumably, into one table, matrix.json and junit.xml")
    m.set_defaults(prog=m.prog)  # "edgefocal matrix": what a bad flag's error starts with
    m.add_argument("recipes", nargs="+", type=Path, help="recipe files or directories of them")
    m.add_argument("--output", "-o", type=Path, default=Path("build/matrix"))
    m.add_argument("--baseline", type=Path, help="a directory with BASELINE/<entry>/report.json per entry")
    m.add_argument("--fresh", action="store_true", help="rebuild entries finished by an earlier run")
    m.add_argument("--history", type=Path, metavar="DIR",
                   help="link matrix.html to the trend charts in DIR/<entry>/history.html (`edgefocal history "
                        "--output DIR/<entry>`); a rerun with every entry finished only rewrites the outputs")
    m.add_argument("--target", help="override every recipe's targets")
    m.add_argument("--precision", help="override every recipe's precision")
    m.add_argument("--require-engine", action="store_true", help="tensorrt: fail when no engine can be built here")


def run(args: argparse.Namespace) -> int:
    from edgefocal.cli.build import given
    from edgefocal.matrix import run_matrix
    from edgefocal.recipe import Overrides

    overrides = Overrides(origin=args.prog)
    if args.target:
        overrides.set("targets", [t.strip() for t in args.target.split(",") if t.strip()], given("target", args.target))
    if args.precision:
        overrides.set("precision", args.precision, given("precision", args.precision))
    if args.require_engine:
        overrides.set("tensorrt.require_engine", True, given("require_engine"))
    result = run_matrix(args.recipes, args.output, args.baseline, resume=not args.fresh, overrides=overrides,
                        log=print, history=args.history)
    print((args.output / "matrix.md").read_text())
    return result.exit_code
