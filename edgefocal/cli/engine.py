"""`edgefocal engine`: build a TensorRT engine (and its sidecar) from an ONNX, on the device; with
`--compare`, then run the engine, ONNX Runtime on the Q/DQ ONNX and torch FP32 on the same images with
Polygraphy's comparators (exit 1 when a pair is outside the tolerances)."""
from __future__ import annotations

import argparse
from pathlib import Path

from edgefocal.core import PRECISIONS


def _batches(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX with 1 ≤ MIN ≤ OPT ≤ MAX, got '{text}'")
    return parts[0], parts[1], parts[2]


def add_parser(sub) -> None:
    p = sub.add_parser("engine", help="build a TensorRT engine from an ONNX (run on the Jetson/GPU)",
                       description=__doc__)
    p.add_argument("--onnx", type=Path, required=True, help="ONNX to build (the Q/DQ ONNX for int8)")
    p.add_argument("--precision", choices=PRECISIONS, required=True)
    p.add_argument("--output", type=Path, help="engine path (default: ONNX path with .engine)")
    p.add_argument("--batch", type=_batches, default=(1, 8, 32), help="MIN,OPT,MAX batch of the profile (1,8,32)")
    p.add_argument("--input-name", default="input")
    p.add_argument("--workspace-mib", type=int, default=2048)
    p.add_argument("--timing-cache", type=Path, help="timing cache file, created or reused")
    p.add_argument("--dla-core", type=int, help="DLA core (Jetson AGX Orin: 0 or 1), GPU fallback on")
    p.add_argument("--sparse-weights", action="store_true", help="allow 2:4 sparse kernels (pruned models)")
    p.add_argument("--trtexec", type=Path, help="trtexec binary to use when the Python bindings are missing")
    c = p.add_argument_group("compare", "engine vs ONNX Runtime (Q/DQ ONNX) vs torch FP32 on the same images")
    c.add_argument("--compare", action="store_true", help="after the build, compare (Polygraphy's Comparator)")
    c.add_argument("--engine", type=Path, help="compare this engine, built before, instead of building one")
    c.add_argument("--recipe", type=Path, help="recipe of the build: its model, eval set and tensorrt.compare_atol/"
                   "compare_rtol (default: recipes/default.yaml)")
    c.add_argument("--atol", type=float, help="absolute tolerance per logit (default: the recipe's)")
    c.add_argument("--rtol", type=float, help="relative tolerance per logit (default: the recipe's)")
    c.add_argument("--images", type=int, default=64, help="eval images to compare on (64)")


def run(args: argparse.Namespace) -> int:
    from edgefocal.errors import BadInput, GateFailed
    from edgefocal.backends.tensorrt import engine_for_onnx

    if args.engine is not None and not args.compare:
        raise BadInput("--engine names an engine to compare, but --compare is not set",
                       hint="add --compare, or drop --engine to build one")
    engine = args.engine
    if engine is None:
        engine_for_onnx(args.onnx, args.precision, args.output, args.batch, args.input_name, args.workspace_mib,
                        args.timing_cache, args.dla_core, args.sparse_weights, args.trtexec)
        engine = args.output or args.onnx.with_suffix(".engine")
    if not args.compare:
        return 0
    from edgefocal.cli.build import default_recipe
    from edgefocal.recipe import load_recipe
    from edgefocal.backends.tensorrt.cross_check import compare_for_recipe

    recipe = load_recipe(args.recipe or default_recipe())
    result = compare_for_recipe(engine, args.onnx, recipe, args.images, args.batch[1], args.atol, args.rtol)
    if not result["passed"]:
        failed = [f"{p['a']} vs {p['b']} (max |diff| {p['max_abs_diff']:.3g})"
                  for p in result["pairs"] if not p["passed"]]
        raise GateFailed(f"outside atol {result['atol']}, rtol {result['rtol']}: {'; '.join(failed)}",
                         hint="see the figures above; loosen --atol/--rtol (or the recipe's) only with a reason")
    return 0
