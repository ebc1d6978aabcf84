"""TensorRT backend: Q/DQ ONNX (INT8) or plain ONNX (FP32/FP16), then an engine where TensorRT imports.

Where it does not (this machine, CI), the Q/DQ ONNX is still built, checked against TensorRT's rules and
verified through ONNX Runtime (labelled a proxy for the engine); the engine is skipped with a reason and
the exact `python -m edgefocal engine ...` command that builds it on the device is printed and stored."""
from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import numpy as np

from edgefocal.backends.base import Backend
from edgefocal.core import PRECISIONS, Artifact, Availability, BuildContext, Probe, Quantized, Runner
from edgefocal.errors import BadInput
from edgefocal.plan import PrecisionPlan
from edgefocal.backends.tensorrt.engine import (
    EngineSpec,
    build_engine,
    find_trtexec,
    import_tensorrt,
)
from edgefocal.backends.tensorrt.runner import QDQProxyRunner, TensorRTRunner
from edgefocal.backends.tensorrt.sidecar import device_facts, write_sidecar

__all__ = ["TensorRTBackend", "TensorRTRunner", "QDQProxyRunner", "EngineSpec", "engine_command", "engine_for_onnx"]


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


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = PRECISIONS
    extra = "tensorrt"

    def availability(self) -> Availability:
        can_build, can_run, detail = _engine_available()
        if not can_build:  # the Q/DQ ONNX is still built and verified through ONNX Runtime
            detail = f"Q/DQ ONNX only (verified in ONNX Runtime); engine: {detail}"
        return Availability(True, can_run, detail,
                            "" if can_run else "run on a Jetson (JetPack 6) or a GPU machine with TensorRT 10/11")

    def check_recipe(self, recipe) -> None:
        if recipe.precision == "int8" and recipe.tensorrt.qdq_producer == "modelopt":
            from edgefocal.backends.tensorrt.modelopt_qdq import require_modelopt

            require_modelopt()  # before minutes of loading and exporting

    def quantize(self, ctx: BuildContext, plan: PrecisionPlan, calibration: np.ndarray) -> Quantized:
        if ctx.recipe.tensorrt.qdq_producer == "modelopt":
            from edgefocal.backends.tensorrt import modelopt_qdq

            return Quantized(*modelopt_qdq.quantize(ctx.onnx_fp32, plan, calibration, ctx.log))
        from edgefocal.backends.tensorrt import qdq

        return Quantized(*qdq.quantize(ctx.onnx_fp32, plan, calibration, ctx.recipe.quantize, ctx.log))

    def probe(self, ctx: BuildContext, plan: PrecisionPlan) -> Probe:
        """The Q/DQ ONNX run by ONNX Runtime, standing in for the engine (which cannot run in the search)."""
        import onnx

        from edgefocal.backends.onnxruntime.surgery import onnx_probe

        return onnx_probe(self.name, self.quantized(ctx, plan).model, onnx.load(str(ctx.onnx_fp32)), ctx.num_threads)

    def runner(self, artifact: Path, precision: str, threads: int | None = None) -> Runner:
        return TensorRTRunner(artifact) if artifact.suffix == ".engine" else QDQProxyRunner(artifact, threads)

    def unlisted_entry(self, manifest: dict, artifact: Path, relative: str) -> dict | None:
        """A TensorRT engine built on the device after the build (`edgefocal engine`, the command the report
        prints) is not in the manifest; it is the build's when its sidecar says it was built from one of the
        build's ONNX artifacts, byte for byte."""
        from edgefocal.backends.tensorrt.sidecar import read_sidecar

        if artifact.suffix != ".engine":
            return None
        sidecar = read_sidecar(artifact)
        source = next((a for a in manifest.get("artifacts", []) if a["path"].endswith(".onnx")
                       and a.get("sha256") == sidecar.get("onnx_sha256")), None)
        if source is None:
            return None
        spec = sidecar.get("build", {}).get("spec", {})
        return {"path": relative, "target": self.name, "precision": spec.get("precision", source["precision"]),
                "sha256": None, "built_from": source["path"], "max_batch": spec.get("max_batch", 1)}

    def package(self, ctx: BuildContext, precision: str, quantized: Quantized | None = None) -> list[Artifact]:
        self.check_precision(precision)
        out = ctx.workdir / "tensorrt"
        out.mkdir(parents=True, exist_ok=True)
        if precision == "int8" and quantized is not None:
            import onnx

            from edgefocal.backends.tensorrt.on_paper import report_facts

            onnx_path = out / "model_int8_qdq.onnx"
            onnx.save(quantized.model, str(onnx_path))
            info = dict(quantized.info)
            paper = report_facts(quantized.model, out)  # the engine on paper: the proxy's row reports it
            variant = ("ModelOpt " if info.get("qdq_producer") == "modelopt" else "") + "Q/DQ ONNX via ONNX Runtime"
        else:
            onnx_path = out / "model_fp32.onnx"
            shutil.copyfile(ctx.onnx_fp32, onnx_path)
            info, paper = {}, {}
            variant = "FP32 ONNX via ONNX Runtime" + (" (FP16 numerics not simulated)" if precision == "fp16" else "")
        spec = _engine_spec(ctx, precision)
        engine = out / f"model_{precision}.engine"
        final = Path(ctx.recipe.output) / "tensorrt"
        command = engine_command(final / onnx_path.name, final / engine.name, spec, ctx.recipe.tensorrt.trtexec)
        (out / "build_engine.sh").write_text(f"#!/bin/sh\n# builds the TensorRT engine on the device\n{command}\n")
        info["engine_command"] = command
        threads = ctx.num_threads
        proxy = Artifact(self.name, precision, onnx_path, lambda: self.runner(onnx_path, precision, threads),
                         info={**info, **paper}, variant=variant, proxy_for="TensorRT engine")
        return [proxy, self._engine_artifact(ctx, onnx_path, engine, spec, command, info, proxy)]

    def _engine_artifact(self, ctx: BuildContext, onnx_path: Path, engine: Path, spec: EngineSpec, command: str,
                         info: dict, proxy: Artifact) -> Artifact:
        """The engine where TensorRT is here; else a skipped artifact saying why and how to build it."""
        required = ctx.recipe.tensorrt.require_engine
        can_build, can_run, detail = _engine_available()
        if not can_build:
            ctx.log(f"TensorRT engine skipped: {detail}")
            ctx.log(f"build it on the device with: {command}")
            return Artifact(self.name, spec.precision, engine, None, info=info, variant="engine", required=required,
                            skipped=detail)
        facts = build_and_describe(onnx_path, engine, spec, ctx.recipe.tensorrt.trtexec, command, ctx.log)
        engine_info = {**info, **{k: facts[k] for k in
                       ("tensorrt_version", "builder", "strongly_typed", "flags", "residency", "layers")}}
        if not can_run:
            return Artifact(self.name, spec.precision, engine, None, info=engine_info, variant="engine",
                            required=required, skipped=detail)
        proxy.requested = False  # the engine itself is verified; the proxy stays in the report for comparison
        return Artifact(self.name, spec.precision, engine, lambda: self.runner(engine, spec.precision),
                        info=engine_info, variant="engine")


def _engine_spec(ctx: BuildContext, precision: str) -> EngineSpec:
    rspec = ctx.recipe.tensorrt
    sparse = rspec.sparse_weights if rspec.sparse_weights is not None else ctx.sparsity_2of4
    return EngineSpec(precision=precision, input_shape=tuple(ctx.data_config["input_size"]),
                      min_batch=rspec.min_batch, opt_batch=rspec.opt_batch, max_batch=rspec.max_batch,
                      workspace_mib=rspec.workspace_mib, timing_cache=rspec.timing_cache,
                      dla_core=rspec.dla_core, sparse_weights=sparse)


def engine_for_onnx(onnx: Path, precision: str, output: Path | None, batch: tuple[int, int, int],
                    input_name: str = "input", workspace_mib: int = 2048, timing_cache: Path | None = None,
                    dla_core: int | None = None, sparse_weights: bool = False, trtexec: Path | None = None,
                    log=print) -> dict:
    """`edgefocal engine`: check the ONNX (TensorRT's Q/DQ rules for int8), build the engine and its sidecar."""
    import onnx as onnx_lib

    if not onnx.is_file():
        raise BadInput(f"ONNX {onnx} does not exist", hint="pass the ONNX written by `edgefocal build`")
    if precision == "int8":
        from edgefocal.backends.tensorrt.conformance import assert_tensorrt_qdq

        for w in assert_tensorrt_qdq(onnx):
            log(str(w))
    model = onnx_lib.load(str(onnx), load_external_data=False)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    if len(dims) != 3 or not all(dims):
        raise BadInput(f"{onnx}: input shape {dims} is not C,H,W with a dynamic batch",
                       hint="export with edgefocal (dynamic batch, fixed image size)")
    engine = output or onnx.with_suffix(".engine")
    spec = EngineSpec(precision, (dims[0], dims[1], dims[2]), input_name, *batch, workspace_mib, timing_cache,
                      dla_core, sparse_weights)
    facts = build_and_describe(onnx, engine, spec, trtexec, engine_command(onnx, engine, spec, trtexec), log)
    log(f"wrote {engine} (TensorRT {facts['tensorrt_version']}, {facts['builder']}, "
        f"{'strongly typed' if facts['strongly_typed'] else 'flags ' + ','.join(facts['flags'])}); "
        f"layers {facts['residency']}")
    return facts
