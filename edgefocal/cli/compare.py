"""`edgefocal compare OLD NEW`: the regression gates of two existing reports, without rebuilding. OLD is the
baseline: a drop against it is a regression (exit 1); a gain is a note to make NEW the new baseline."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgefocal.cli.build import add_ci_output_flags, add_regression_flags, ci_outputs, default_recipe, \
    regression_overrides


def add_parser(sub) -> None:
    c = sub.add_parser("compare", help="compare two existing reports (OLD is the baseline); exit 1 on a regression")
    c.set_defaults(prog=c.prog)  # "edgefocal compare": what a bad flag's error starts with
    c.add_argument("old", type=Path, help="the baseline: a report.json or its output directory")
    c.add_argument("new", type=Path, help="the build to judge: a report.json or its output directory")
    c.add_argument("--recipe", type=Path, help="take the bounds from this recipe's gates (default: recipes/default.yaml)")
    add_regression_flags(c)
    add_ci_output_flags(c)


def run(args: argparse.Namespace) -> int:
    from edgefocal.baseline import compare_paths, load_report
    from edgefocal.recipe import load_recipe

    gates = load_recipe(args.recipe or default_recipe(), regression_overrides(args)).gates
    comparison = compare_paths(args.old, args.new, gates)
    for g in comparison.results:
        print(g.describe())
    from edgefocal.serving_report import compare_lines

    for line in compare_lines(comparison.deltas):
        print(line)
    for note in comparison.notes:
        print(f"note: {note}")
    ci_outputs(args, f"{args.new} vs {args.old}", comparison.results, load_report(args.new), comparison)
    if not comparison.passed:
        print(f"error: {sum(not g.passed for g in comparison.results)} regression gate(s) failed against {args.old}",
              file=sys.stderr)
    return comparison.exit_code
