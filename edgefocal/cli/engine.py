"""`edgefocal engine`: build a TensorRT engine (and its sidecar) from an ONNX, on the device."""
from __future__ import annotations

import argparse
from pathlib import Path


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
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), required=True)
    p.add_argument("--output", type=Path, help="engine path (default: ONNX path with .engine)")
    p.add_argument("--batch", type=_batches, default=(1, 8, 32), help="MIN,OPT,MAX batch of the profile (1,8,32)")
    p.add_argument("--input-name", default="input")
    p.add_argument("--workspace-mib", type=int, default=2048)
    p.add_argument("--timing-cache", type=Path, help="timing cache file, created or reused")
    p.add_argument("--dla-core", type=int, help="DLA core (Jetson AGX Orin: 0 or 1), GPU fallback on")
    p.add_argument("--sparse-weights", action="store_true", help="allow 2:4 sparse kernels (pruned models)")
    p.add_argument("--trtexec", type=Path, help="trtexec binary to use when the Python bindings are missing")


def run(args: argparse.Namespace) -> int:
    from edgefocal.targets.tensorrt import engine_for_onnx

    engine_for_onnx(args.onnx, args.precision, args.output, args.batch, args.input_name, args.workspace_mib,
                    args.timing_cache, args.dla_core, args.sparse_weights, args.trtexec)
    return 0
