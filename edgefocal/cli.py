"""Command line: `build`, `doctor`, `engine`. The one place that prints errors and picks exit codes:
0 ok, 1 a gate failed, 2 bad input, 130 interrupted; any other exception is our bug and keeps its
traceback."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgefocal.errors import BadInput, EdgefocalError


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgefocal", description="A trained FocalNet in, verified edge artifacts out.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command")

    b = sub.add_parser("build", help="prune, quantize, export, verify and gate (default command)")
    b.add_argument("--recipe", type=Path, help="a YAML recipe (see recipes/); flags below override its fields")
    b.add_argument("--target", help="onnxruntime, openvino, tensorrt, coreml, auto, or a comma-separated list")
    b.add_argument("--precision", help="fp32, fp16 or int8")
    b.add_argument("--model", help="a timm focalnet_* name or edgefocal-fmnist (the embedded default)")
    b.add_argument("--checkpoint", type=Path, help="local weights: timm or official microsoft/FocalNet format")
    b.add_argument("--num-classes", type=int)
    b.add_argument("--trust-checkpoint", action="store_true", help="allow non-tensor objects in a .pth (full unpickling)")
    b.add_argument("--calibration", help="a calibration set name from calibration/ (e.g. fmnist-train-300)")
    b.add_argument("--calib-size", type=int, help="number of calibration images")
    b.add_argument("--calib-dir", type=Path, help="calibrate on an ImageFolder directory (class per sub-folder)")
    b.add_argument("--eval-dir", type=Path, help="evaluate on an ImageFolder directory")
    b.add_argument("--eval-size", type=int, help="evaluate on a class-balanced subset of this size")
    b.add_argument("--data-root", type=Path, help="directory of the Fashion-MNIST idx files")
    b.add_argument("--prune", help="channels:RATIO (fraction of the model's MACs removed), 2:4[:wanda] or none; "
                   "options ,reconstruct=off,recover=N")
    b.add_argument("--max-agreement-drop", type=float, help="NNCF accuracy control: keep layers in float until "
                   "agreement with FP32 drops by at most this (e.g. 0.01)")
    b.add_argument("--max-top1-drop", type=float, help="gate: points of top-1 the requested artifacts may lose")
    b.add_argument("--min-agreement", type=float, help="gate: minimum top-1 agreement with the FP32 reference")
    b.add_argument("--min-speedup", type=float, help="gate: minimum speedup vs the reference at the smallest batch")
    b.add_argument("--batch-sizes", help="comma-separated benchmark batch sizes, e.g. 1,8")
    b.add_argument("--quant-preset", choices=("focalnet", "all", "gemm-only"),
                   help="INT8 precision policy for every target (focalnet: dense convs INT8; depthwise convs, "
                        "gate products, global context and head float)")
    b.add_argument("--coreml-compression", choices=("w8", "w8a8", "palettize", "sparse"),
                   help="coreml: what --precision int8 builds")
    b.add_argument("--require-engine", action="store_true", help="tensorrt: fail when no engine can be built here")
    b.add_argument("--output", "-o", type=Path, help="output directory (replaced atomically)")
    b.add_argument("--quiet", action="store_true", help="no progress bars or table")

    sub.add_parser("doctor", help="which targets this machine can build and run")
    _add_engine_parser(sub)
    return p


def _batches(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX with 1 ≤ MIN ≤ OPT ≤ MAX, got '{text}'")
    return parts[0], parts[1], parts[2]


def _add_engine_parser(sub) -> None:
    """`edgefocal engine`: build a TensorRT engine (and its sidecar) from an ONNX, on the device."""
    p = sub.add_parser("engine", help="build a TensorRT engine from an ONNX (run on the Jetson/GPU)",
                       description=_add_engine_parser.__doc__)
    p.add_argument("--onnx", type=Path, required=True, help="ONNX to build (the Q/DQ ONNX for int8)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), required=True)
    p.add_argument("--output", type=Path, help="engine path (default: ONNX path with .engine)")
    p.add_argument("--batch", type=_batches, default=(1, 8, 32), help="MIN,OPT,MAX batch of the profile (1,8,32)")
    p.add_argument("--input-name", default="input")
    p.add_argument("--workspace-mib", type=int, default=2048)
    p.add_argument("--timing-cache", type=Path, help="timing cache file, created or reused")
    p.add_argument("--dla-core", type=int, help="DLA core (Jetson AGX Orin: 0 or 1), GPU fallback on")
    p.add_argument("--sparse-weights", action="store_true", help="allow 2:4 sparse kernels (pruned models)")
    p.add_argument("--trtexec", type=Path, help="trtexec binary to use when the Python bindings are missing")


def _run_engine(args: argparse.Namespace) -> int:
    from edgefocal.targets.tensorrt import engine_for_onnx

    engine_for_onnx(args.onnx, args.precision, args.output, args.batch, args.input_name, args.workspace_mib,
                    args.timing_cache, args.dla_core, args.sparse_weights, args.trtexec)
    return 0


def overrides_from_args(args: argparse.Namespace) -> dict:
    o: dict = {}
    if args.target:
        o["targets"] = [t.strip() for t in args.target.split(",") if t.strip()]
    simple = {"precision": "precision", "model": "model.name", "checkpoint": "model.checkpoint",
              "num_classes": "model.num_classes", "calib_size": "calibration.size", "eval_size": "eval.size",
              "max_agreement_drop": "quantize.max_agreement_drop", "max_top1_drop": "gates.max_top1_drop",
              "min_agreement": "gates.min_agreement", "min_speedup": "gates.min_speedup", "output": "output",
              "quant_preset": "quantize.preset",
              "coreml_compression": "coreml.compression"}
    for attr, key in simple.items():
        value = getattr(args, attr)
        if value is not None:
            o[key] = str(value) if isinstance(value, Path) else value
    if args.trust_checkpoint:
        o["model.trust_checkpoint"] = True
    if args.require_engine:
        o["tensorrt.require_engine"] = True
    if args.calibration:
        o["calibration"] = args.calibration
    if args.calib_dir:
        o.update({"calibration.source": "imagefolder", "calibration.path": str(args.calib_dir)})
    if args.eval_dir:
        o.update({"eval.source": "imagefolder", "eval.path": str(args.eval_dir)})
    if args.data_root:
        o.update({"calibration.path": str(args.data_root), "eval.path": str(args.data_root)})
    if args.batch_sizes:
        try:
            o["bench.batch_sizes"] = [int(x) for x in args.batch_sizes.split(",")]
        except ValueError:
            raise BadInput(f"--batch-sizes {args.batch_sizes} is not a list of integers", hint="e.g. --batch-sizes 1,8")
    if args.prune:
        from edgefocal.prune import parse_prune_flag

        for k, v in parse_prune_flag(args.prune).items():
            o[f"prune.{k}"] = v
    return o


def _run_build(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgefocal.pipeline import build, raise_on_failed_gates
    from edgefocal.recipe import REPO_ROOT, load_recipe

    default = REPO_ROOT / "recipes" / "default.yaml"  # in a source checkout; else the built-in defaults
    recipe = load_recipe(args.recipe or (default if default.is_file() else None), overrides_from_args(args))
    console = None if args.quiet else Console(width=None if sys.stdout.isatty() else 160)
    result = build(recipe, console)
    raise_on_failed_gates(result)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _build_parser()
    if not any(a in ("build", "doctor", "engine", "-h", "--help") for a in argv):
        # `python -m edgefocal [flags]` means `build [flags]`
        debug = ["--debug"] if "--debug" in argv else []
        argv = [*debug, "build", *[a for a in argv if a != "--debug"]]
    args = parser.parse_args(argv)
    try:
        if args.command == "doctor":
            from rich.console import Console

            from edgefocal.doctor import render

            return render(Console())
        if args.command == "engine":
            return _run_engine(args)
        return _run_build(args)
    except EdgefocalError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
