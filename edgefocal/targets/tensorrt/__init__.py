"""TensorRT target: Q/DQ ONNX (INT8) or plain ONNX (FP32/FP16), then an engine where TensorRT imports.

Where it does not (this machine, CI), the Q/DQ ONNX is still built, checked against TensorRT's rules and
verified through ONNX Runtime (labelled a proxy for the engine); the engine is skipped with a reason and
the exact `python -m edgefocal engine ...` command that builds it on the device is printed and stored."""
from __future__ import annotations

import argparse
import shlex
import shutil
from pathlib import Path

from edgefocal.errors import BadInput
from edgefocal.targets.base import Artifact, Availability, BuildContext, Target
from edgefocal.targets.tensorrt.engine import (
    EngineSpec,
    build_engine,
    find_trtexec,
    import_tensorrt,
)
from edgefocal.targets.tensorrt.runner import QDQProxyRunner, TensorRTRunner
from edgefocal.targets.tensorrt.sidecar import device_facts, write_sidecar

__all__ = ["TensorRTTarget", "TensorRTRunner", "QDQProxyRunner", "EngineSpec", "engine_command",
           "add_engine_parser", "run_engine"]


def engine_command(onnx: Path, engine: Path, spec: EngineSpec, trtexec: Path | None = None) -> str:
    """The exact command that builds this engine on the device."""
    mn, opt, mx = spec.min_batch, spec.opt_batch, spec.max_batch
    args = ["python", "-m", "edgefocal", "engine", "--onnx", str(onnx), "--precision", spec.precision,
            "--output", str(engine), "--batch", f"{mn},{opt},{mx}", "--workspace-mib", str(spec.workspace_mib)]
    if spec.timing_cache:
        args += ["--timing-cache", str(spec.timing_cache)]
    if spec.dla_core is not None:
        args += ["--dla-core", str(spec.dla_core)]
    if spec.sparse_weights:
        args.append("--sparse-weights")
    if trtexec:
        args += ["--trtexec", str(trtexec)]
    return shlex.join(args)


def _engine_available() -> tuple[bool, bool, str]:
    """(can build, can run, detail)."""
    trt = import_tensorrt()
    if trt is not None:
        try:
            import torch

            cuda = torch.cuda.is_available()
        except ImportError:
            cuda = False
        return True, cuda, f"tensorrt {trt.__version__}" + ("" if cuda else "; torch sees no CUDA GPU")
    exe = find_trtexec()
    if exe is not None:
        return True, False, f"trtexec at {exe} (no Python bindings: engines build but the runner needs tensorrt)"
    return False, False, "TensorRT is not installed here (no tensorrt module, no trtexec)"


def _sha256(path: Path) -> str:
    from edgefocal.models import sha256_file

    return sha256_file(path)


def build_and_describe(onnx: Path, engine: Path, spec: EngineSpec, trtexec: Path | None, command: str,
                       log=print) -> dict:
    """Build the engine, write its sidecar, return report facts (flags, residency)."""
    result = build_engine(onnx, engine, spec, trtexec, log)
    build = {"builder": result.builder, "strongly_typed": result.strongly_typed, "flags": result.flags,
             "spec": spec.as_dict(), "onnx": onnx.name, "onnx_built": result.onnx_built.name}
    write_sidecar(engine, device_facts(result.tensorrt_version), build, _sha256(onnx), command)
    residency = result.residency()
    if spec.dla_core is not None:
        log(f"DLA core {spec.dla_core}: {residency.get('DLA', 0)} layers on DLA, {residency.get('GPU', 0)} on GPU")
    return {"tensorrt_version": result.tensorrt_version, **build, "residency": residency, "layers": result.layers}


class TensorRTTarget(Target):
    name = "tensorrt"
    precisions = ("fp32", "fp16", "int8")
    extra = "tensorrt"

    def availability(self) -> Availability:
        can_build, can_run, detail = _engine_available()
        if not can_build:  # the Q/DQ ONNX is still built and verified through ONNX Runtime
            detail = f"Q/DQ ONNX only (verified in ONNX Runtime); engine: {detail}"
        return Availability(True, can_run, detail,
                            "" if can_run else "run on a Jetson (JetPack 6) or a GPU machine with TensorRT 10/11")

    def build(self, ctx: BuildContext, precision: str) -> list[Artifact]:
        self.check_precision(precision)
        rspec = ctx.recipe.tensorrt
        out = ctx.workdir / "tensorrt"
        out.mkdir(parents=True, exist_ok=True)
        threads = ctx.num_threads
        info: dict = {"preset": None}
        if precision == "int8":
            from edgefocal.quantize.tensorrt_qdq import qdq_onnx_for_tensorrt

            onnx = out / "model_int8_qdq.onnx"
            ctx.log(f"quantizing for TensorRT (NNCF, explicit Q/DQ, preset '{rspec.preset}')")
            stats = qdq_onnx_for_tensorrt(ctx.onnx_fp32, ctx.calibration, rspec.preset, onnx, ctx.log)
            info = {"preset": stats["preset"], "int8_roles": stats["int8_roles"], "float_roles": stats["float_roles"],
                    "fusion_qdq": stats["fusion_qdq"], "qdq_nodes": stats["qdq_nodes"],
                    "conformance": "pass", "conformance_warnings": stats["conformance_warnings"]}
            variant = "Q/DQ ONNX via ONNX Runtime"
        else:
            onnx = out / "model_fp32.onnx"
            shutil.copyfile(ctx.onnx_fp32, onnx)
            variant = "FP32 ONNX via ONNX Runtime" + (" (FP16 numerics not simulated)" if precision == "fp16" else "")

        sparse = rspec.sparse_weights if rspec.sparse_weights is not None else bool(ctx.facts.get("sparsity_2of4"))
        spec = EngineSpec(precision=precision, input_shape=tuple(ctx.data_config["input_size"]),
                          min_batch=rspec.min_batch, opt_batch=rspec.opt_batch, max_batch=rspec.max_batch,
                          workspace_mib=rspec.workspace_mib, timing_cache=rspec.timing_cache,
                          dla_core=rspec.dla_core, sparse_weights=sparse)
        engine = out / f"model_{precision}.engine"
        final = Path(ctx.recipe.output) / "tensorrt"
        command = engine_command(final / onnx.name, final / engine.name, spec, rspec.trtexec)
        (out / "build_engine.sh").write_text(f"#!/bin/sh\n# builds the TensorRT engine on the device\n{command}\n")
        info["engine_command"] = command

        proxy = Artifact("tensorrt", precision, onnx, lambda: QDQProxyRunner(onnx, threads),
                         info={**info, "variant": variant, "proxy_for": "TensorRT engine"})
        can_build, can_run, detail = _engine_available()
        if not can_build:
            ctx.log(f"TensorRT engine skipped: {detail}")
            ctx.log(f"build it on the device with: {command}")
            skipped = Artifact("tensorrt", precision, engine, None,
                               info={**info, "variant": "engine", "required": rspec.require_engine},
                               skipped=detail)
            return [proxy, skipped]
        facts = build_and_describe(onnx, engine, spec, rspec.trtexec, command, ctx.log)
        engine_info = {**info, "variant": "engine", **{k: facts[k] for k in
                       ("tensorrt_version", "builder", "strongly_typed", "flags", "residency", "layers")}}
        if not can_run:
            return [proxy, Artifact("tensorrt", precision, engine, None, info={**engine_info,
                                    "required": rspec.require_engine}, skipped=detail)]
        proxy.requested = False  # the engine itself is verified; the proxy stays in the report for comparison
        return [proxy, Artifact("tensorrt", precision, engine, lambda: TensorRTRunner(engine), info=engine_info)]


def _batches(text: str) -> tuple[int, int, int]:
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX with 1 ≤ MIN ≤ OPT ≤ MAX, got '{text}'")
    return parts[0], parts[1], parts[2]


def add_engine_parser(subparsers) -> argparse.ArgumentParser:
    """`python -m edgefocal engine`: build a TensorRT engine (and its sidecar) from an ONNX on the device."""
    p = subparsers.add_parser("engine", help="build a TensorRT engine from an ONNX (run on the Jetson/GPU)",
                              description=add_engine_parser.__doc__)
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
    return p


def run_engine(args, log=print) -> int:
    """Checks the ONNX (Q/DQ rules for int8), builds the engine and sidecar, prints residency."""
    import onnx as onnx_lib

    if not args.onnx.is_file():
        raise BadInput(f"ONNX {args.onnx} does not exist", hint="pass the ONNX written by `edgefocal build`")
    if args.precision == "int8":
        from edgefocal.quantize.conformance import assert_tensorrt_qdq

        for w in assert_tensorrt_qdq(args.onnx):
            log(str(w))
    model = onnx_lib.load(str(args.onnx), load_external_data=False)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    if len(dims) != 3 or not all(dims):
        raise BadInput(f"{args.onnx}: input shape {dims} is not C,H,W with a dynamic batch",
                       hint="export with edgefocal (dynamic batch, fixed image size)")
    engine = args.output or args.onnx.with_suffix(".engine")
    mn, opt, mx = args.batch
    spec = EngineSpec(args.precision, tuple(dims), args.input_name, mn, opt, mx, args.workspace_mib,
                      args.timing_cache, args.dla_core, args.sparse_weights)
    command = engine_command(args.onnx, engine, spec, args.trtexec)
    facts = build_and_describe(args.onnx, engine, spec, args.trtexec, command, log)
    log(f"wrote {engine} (TensorRT {facts['tensorrt_version']}, {facts['builder']}, "
        f"{'strongly typed' if facts['strongly_typed'] else 'flags ' + ','.join(facts['flags'])}); "
        f"layers {facts['residency']}")
    return 0
