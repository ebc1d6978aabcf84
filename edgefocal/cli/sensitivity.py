"""`edgefocal sensitivity`: what INT8 costs in each part of a FocalNet, in FocalNet terms, measured on the
target runtimes on held-out images (disjoint from calibration and eval), with each part's share of the
INT8 artifact's measured latency: a table, sensitivity.json and sensitivity.svg."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgefocal.cli.build import default_recipe, given


def add_parser(sub) -> None:
    s = sub.add_parser("sensitivity", help="per-part INT8 cost (agreement, KL) and latency share, on held-out images")
    s.set_defaults(prog=s.prog)  # "edgefocal sensitivity": what a bad flag's error starts with
    s.add_argument("--recipe", type=Path, help="a YAML recipe (model, calibration, quantize settings)")
    s.add_argument("--model", help="a timm focalnet_* name or edgefocal-fmnist")
    s.add_argument("--checkpoint", type=Path)
    s.add_argument("--target", help="openvino, onnxruntime, tensorrt (its Q/DQ ONNX on ONNX Runtime); a comma list")
    s.add_argument("--images", type=int, default=2000, help="held-out images to measure on")
    s.add_argument("--output", "-o", type=Path, default=Path("build/sensitivity"))


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgefocal.recipe import Overrides, load_recipe
    from edgefocal.sensitivity import measure, write_plot

    overrides = Overrides(origin=args.prog)
    for attr, key in (("model", "model.name"), ("checkpoint", "model.checkpoint"), ("images", "quantize.selection_size")):
        if (value := getattr(args, attr)) is not None:
            overrides.set(key, str(value) if isinstance(value, Path) else value, given(attr, value))
    if args.target:
        overrides.set("targets", [t.strip() for t in args.target.split(",") if t.strip()], given("target", args.target))
    recipe = load_recipe(args.recipe or default_recipe(), overrides)
    console = Console(width=None if sys.stdout.isatty() else 160)
    result = measure(recipe, log=lambda m: console.print(f"[cyan]›[/cyan] {m}"))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "sensitivity.json").write_text(json.dumps(result, indent=2) + "\n")
    write_plot(result["sensitivity"], args.output / "sensitivity.svg")
    table = Table(title=f"INT8 sensitivity: {result['model']} on {', '.join(result['measured_on'])} "
                        f"({result['images']} held-out images)")
    for col in ("part", "module", "agreement cost", "KL cost", "latency share"):
        table.add_column(col, justify="left" if col in ("part", "module") else "right")
    for r in result["sensitivity"]:
        share = "–" if r["latency_share"] is None else f"{r['latency_share']:.1%}"
        table.add_row(r["label"], r["module"], f"{-r['agreement_cost'] * 100:+.2f} pt", f"{r['kl_cost']:.2e}", share)
    console.print(table)
    console.print(f"all INT8: agreement {result['agreement_int8']:.4f}; wrote {args.output}/sensitivity.json, .svg "
                  f"in {result['seconds']:.0f} s")
    return 0
