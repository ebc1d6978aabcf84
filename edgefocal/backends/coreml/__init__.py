"""Core ML backend: an .mlpackage (ML program) that Xcode loads as is, verified on Linux by edgefocal's numpy
ML-program executor (Core ML itself predicts only on macOS).

Conversion: torch.jit.trace → coremltools ML program; image input with the model's normalization folded into
the program (or a tensor input), class labels attached (a classifier), fixed or ranged batch. The int8
artifact is the quantize stage's compression (backends/coreml/quantize.py) of an FP16- or FP32-compute program.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from edgefocal._deps import require
from edgefocal.errors import BadInput
from edgefocal.backends.base import Backend
from edgefocal.backends.coreml.executor import to_program_input
from edgefocal.backends.coreml.package import save_package
from edgefocal.core import PRECISIONS, Artifact, Availability, BuildContext, Probe, Quantized, Runner
from edgefocal.plan import PrecisionPlan

LINUX_LATENCY_NOTE = "Core ML runs only on macOS/iOS; latency is measured only on macOS"
_NEEDS_IOS17 = ("iOS16", "macOS13")


def on_macos() -> bool:
    """Core ML prediction needs macOS and coremltools' native extension (absent from Linux wheels)."""
    if platform.system() != "Darwin":
        return False
    try:
        import coremltools.libcoremlpython  # noqa: F401
    except ImportError:
        return False
    return True


def package_size(path: Path) -> int:
    """Bytes on disk of an .mlpackage (all files in the directory)."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# ---------------------------------------------------------------- conversion


def _pixel_wrapper(model, mean, std):
    """The model behind (x/255 - mean)/std, so the package takes raw pixels. Core ML's image type has one
    scale for all channels; folding per-channel std into the program keeps ImageNet-style normalization
    exact."""
    import torch

    class PixelInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

        def forward(self, x):
            return self.model((x * (1.0 / 255.0) - self.mean) * self.inv_std)

    return PixelInput().eval()


def coreml_from_torch(model, data_config: dict, class_names: list[str], spec, deployment_target: str,
                      compute_precision: str):
    """An ML-program MLModel (not saved) of `model` with the recipe's input type, labels and batch."""
    ct = require("coremltools", "coreml")
    import torch

    c, h, w = (int(v) for v in data_config["input_size"])
    if spec.input_type == "image" and c not in (1, 3):
        raise BadInput(f"an image input needs 1 or 3 channels, the model takes {c}",
                       hint="set coreml.input_type: tensor")
    lo, hi = (spec.batch, spec.batch) if isinstance(spec.batch, int) else spec.batch
    batch = lo if lo == hi else ct.RangeDim(lo, hi, default=lo)
    net = _pixel_wrapper(model, data_config["mean"], data_config["std"]) if spec.input_type == "image" else model.eval()
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.rand(max(lo, 2), c, h, w) * (255 if spec.input_type == "image" else 1))
    if spec.input_type == "image":
        layout = ct.colorlayout.GRAYSCALE if c == 1 else ct.colorlayout.RGB
        inputs = [ct.ImageType(name="image", shape=(batch, c, h, w), color_layout=layout)]
    else:
        inputs = [ct.TensorType(name="input", shape=(batch, c, h, w), dtype=np.float32)]
    kwargs = {}
    if spec.class_labels:
        kwargs["classifier_config"] = ct.ClassifierConfig([str(n) for n in class_names])
    else:
        kwargs["outputs"] = [ct.TensorType(name="logits")]
    try:
        mlmodel = ct.convert(
            traced, inputs=inputs, convert_to="mlprogram",
            minimum_deployment_target=getattr(ct.target, deployment_target),
            compute_precision=ct.precision.FLOAT32 if compute_precision == "fp32" else ct.precision.FLOAT16,
            **kwargs,
        )
    except Exception as e:  # coremltools raises ValueError/RuntimeError/NotImplementedError for unsupported graphs
        raise BadInput(f"coremltools could not convert the model ({type(e).__name__}: {str(e)[:200]})",
                       hint="check the model is a timm FocalNet; try coreml.input_type: tensor") from e
    meta = mlmodel.user_defined_metadata
    meta["edgefocal.mean"] = json.dumps([float(v) for v in data_config["mean"]])
    meta["edgefocal.std"] = json.dumps([float(v) for v in data_config["std"]])
    meta["edgefocal.input_size"] = json.dumps([c, h, w])
    mlmodel.short_description = "FocalNet classifier (edgefocal)"
    return mlmodel


def compression_stats(package: Path) -> dict:
    """Counts of compressed weight tensors and activation Q/DQ ops, and the package's op census."""
    from edgefocal.backends.coreml.executor import op_census, read_program

    prog, _ = read_program(package)
    census = op_census(prog)
    main = prog.functions["main"]
    compressed = {t: n for t, n in census.items() if t.startswith("constexpr_")}
    float_weights = sum(1 for op in main.operations if op.op_type in ("conv", "linear")
                        and op.inputs["weight"].op is not None and op.inputs["weight"].op.op_type == "const")
    return {
        "op_census": {t: n for t, n in census.items() if t != "const"},
        "compressed_weight_tensors": compressed,
        "float_weight_tensors": float_weights,
        "activation_quantize_ops": census.get("quantize", 0),
    }


# ---------------------------------------------------------------- runners


def _normalization(package: Path):
    ct = require("coremltools", "coreml")
    meta = ct.models.MLModel(str(package), skip_model_load=True).user_defined_metadata
    if "edgefocal.mean" not in meta:
        return None, None
    return json.loads(meta["edgefocal.mean"]), json.loads(meta["edgefocal.std"])


class CoreMLExecutorRunner(Runner):
    """Runs the saved ML program with edgefocal's numpy executor (Linux, any OS): accuracy of the actual
    artifact, not a latency figure."""

    device = "numpy ML-program executor (edgefocal)"

    def __init__(self, artifact: Path, batch: int = 64):
        super().__init__(artifact)
        self.batch = batch
        self.executor = None

    def load(self) -> None:
        from edgefocal.backends.coreml.executor import MLProgramExecutor

        self.executor = MLProgramExecutor(self.artifact)
        self.mean, self.std = _normalization(self.artifact)
        if self.executor.info.image_input and self.mean is None:
            raise BadInput(f"{self.artifact} takes an image but carries no edgefocal normalization metadata",
                           hint="build it with edgefocal, or convert with input_type tensor")

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = to_program_input(x, self.executor.info.image_input, self.mean, self.std)
        outs = [self.executor.run(x[i:i + self.batch]) for i in range(0, len(x), self.batch)]
        return np.concatenate(outs).reshape(len(x), -1)

    def close(self) -> None:
        self.executor = None


class CoreMLRunner(Runner):
    """Core ML prediction through coremltools (macOS only): accuracy and latency on the Mac."""

    def __init__(self, artifact: Path, compute_units: str = "ALL"):
        super().__init__(artifact)
        self.compute_units = compute_units
        self.model = None

    def load(self) -> None:
        ct = require("coremltools", "coreml")
        if not on_macos():
            raise BadInput("Core ML prediction needs macOS", hint="on Linux use CoreMLExecutorRunner (numpy executor)")
        from edgefocal.backends.coreml.executor import read_program

        _, self.info = read_program(self.artifact)
        self.model = ct.models.MLModel(str(self.artifact), compute_units=getattr(ct.ComputeUnit, self.compute_units))
        self.mean, self.std = _normalization(self.artifact)
        self.device = f"Core ML ({self.compute_units}, {platform.machine()})"

    def _feed(self, x: np.ndarray) -> dict:
        if not self.info.image_input:
            return {self.info.input_name: x}
        from PIL import Image

        pixels = np.clip(np.rint(to_program_input(x, True, self.mean, self.std)), 0, 255).astype(np.uint8)[0]
        img = Image.fromarray(pixels[0], "L") if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0), "RGB")
        return {self.info.input_name: img}

    def infer(self, x: np.ndarray) -> np.ndarray:
        rows = []
        for i in range(len(x)):  # one image per call: image inputs and classifiers take one item each
            out = self.model.predict(self._feed(x[i:i + 1]))
            if self.info.classifier:
                probs = out[self.info.output_names[1]]
                rows.append(np.array([probs[c] for c in self.info.class_labels], np.float32))
            else:
                rows.append(np.asarray(out[self.info.output_names[0]], np.float32).reshape(-1))
        return np.stack(rows)

    def close(self) -> None:
        self.model = None


# ---------------------------------------------------------------- target


class CoreMLBackend(Backend):
    name = "coreml"
    precisions = PRECISIONS
    extra = "coreml"

    def availability(self) -> Availability:
        try:
            import coremltools as ct
        except ImportError as e:
            return Availability(False, False, f"coremltools does not import ({e})", "pip install 'edgefocal[coreml]'")
        if on_macos():
            return Availability(True, True, f"coremltools {ct.__version__}, Core ML prediction available")
        return Availability(True, True, f"coremltools {ct.__version__}; no Core ML here ({platform.system()}): "
                                        "artifacts are verified by the numpy ML-program executor, latency only on macOS")

    def runner(self, artifact: Path, precision: str, threads: int | None = None) -> Runner:
        return CoreMLRunner(artifact) if on_macos() else CoreMLExecutorRunner(artifact)

    def _artifact(self, path: Path, precision: str, info: dict, requested: bool = True) -> Artifact:
        """The report's flags (variant, no_latency) become the artifact's fields, the rest stays facts."""
        info = dict(info)
        return Artifact(self.name, precision, path, lambda: self.runner(path, precision), info=info,
                        requested=requested, variant=info.pop("variant", None), no_latency=info.pop("no_latency", None))

    def quantize(self, ctx: BuildContext, plan: PrecisionPlan, calibration: np.ndarray) -> Quantized:
        from edgefocal.backends.coreml.quantize import compress

        float_program, stats = self._calibrated(ctx, calibration)
        modules = [n for n, _ in ctx.model.named_modules()]
        return Quantized(*compress(float_program, plan, stats, ctx.recipe.coreml, modules,
                                   0 if calibration is None else len(calibration)))

    def _calibrated(self, ctx: BuildContext, calibration: np.ndarray | None):
        """The float program and its W8A8 ranges (None for weight-only compressions), once per build: the
        search's probe and every plan packaged after it compress from the same two."""
        import tempfile

        from edgefocal.backends.coreml.quantize import calibrated_ranges

        key = (ctx.onnx_fp32, id(calibration))
        cached = getattr(self, "_calibration", None)
        if cached is None or cached[0] != key:
            float_program = self._float_program(ctx)
            with tempfile.TemporaryDirectory(dir=ctx.workdir) as scratch:
                stats = calibrated_ranges(float_program, calibration, ctx.recipe.coreml, ctx.data_config,
                                          Path(scratch), ctx.log)
            self._calibration = cached = (key, float_program, stats)
        return cached[1], cached[2]

    def probe(self, ctx: BuildContext, plan: PrecisionPlan) -> Probe:
        """Variants compressed by coremltools and run by the numpy executor (probe.py), from the program and
        ranges the all-INT8 model was quantized with."""
        from edgefocal.backends.coreml.probe import coreml_probe

        self.quantized(ctx, plan)  # kept for packaging when the plan stands
        float_program, stats = self._calibrated(ctx, ctx.calibration)
        return coreml_probe(f"{self.name} ({CoreMLExecutorRunner.device})", float_program, plan, stats,
                            ctx.recipe.coreml, [n for n, _ in ctx.model.named_modules()], ctx.data_config,
                            ctx.workdir)

    def _info(self, path: Path, deployment_target: str, compute_precision: str, spec, variant: str,
              facts: dict | None = None) -> dict:
        info = {
            "variant": variant,
            "minimum_deployment_target": deployment_target,
            "compute_precision": compute_precision,
            "input_type": spec.input_type,
            "batch": spec.batch,
            "size_bytes": package_size(path),
            **compression_stats(path),
            **(facts or {}),
        }
        if on_macos():
            info["runner"] = "Core ML (coremltools predict)"
        else:
            info["runner"] = CoreMLExecutorRunner.device
            info["latency"] = "macOS only"
            info["no_latency"] = LINUX_LATENCY_NOTE
        return info

    def _convert(self, ctx: BuildContext, deployment_target: str, compute_precision: str):
        return coreml_from_torch(ctx.model, ctx.data_config, ctx.class_names, ctx.recipe.coreml, deployment_target,
                                 compute_precision)

    def _float_program(self, ctx: BuildContext):
        """The program the int8 compression starts from, in coreml.compute_precision."""
        spec = ctx.recipe.coreml
        target = spec.deployment_target("int8")
        if spec.compression == "w8a8" and target in _NEEDS_IOS17:
            raise BadInput(f"coreml.compression w8a8 needs minimum_deployment_target iOS17/macOS14 or later, "
                           f"got {target}", hint="raise coreml.minimum_deployment_target, or use compression: w8")
        return self._convert(ctx, target, spec.compute_precision)

    def package(self, ctx: BuildContext, precision: str, quantized: Quantized | None = None) -> list[Artifact]:
        self.check_precision(precision)
        spec = ctx.recipe.coreml
        target = spec.deployment_target(precision)
        out = ctx.workdir / "coreml"
        out.mkdir(parents=True, exist_ok=True)
        ctx.log(f"converting to Core ML (ML program, {target}, FP32 compute)")
        fp32 = out / "model_fp32.mlpackage"
        save_package(self._convert(ctx, target, "fp32"), fp32)
        artifacts = [self._artifact(fp32, "fp32", self._info(fp32, target, "fp32", spec, "FP32 compute"),
                                    requested=precision == "fp32")]
        if precision == "fp16":
            fp16 = out / "model_fp16.mlpackage"
            save_package(self._convert(ctx, target, "fp16"), fp16)
            artifacts.append(self._artifact(fp16, "fp16", self._info(fp16, target, "fp16", spec, "FP16 compute")))
        elif precision == "int8" and quantized is not None:
            path = out / f"model_{spec.compression}.mlpackage"
            save_package(quantized.model, path)
            label = {"w8": "W8 (INT8 weights)", "w8a8": "W8A8 (INT8 weights + activations)",
                     "palettize": f"{spec.palettize_bits}-bit palettized weights", "sparse": "sparse weights"}
            cp = spec.compute_precision
            facts = {**quantized.info, "size_ratio_vs_fp32": round(package_size(path) / package_size(fp32), 4)}
            artifacts.append(self._artifact(path, "int8", self._info(path, target, cp, spec,
                                                                     f"{label[spec.compression]}, {cp.upper()} compute",
                                                                     facts)))
        return artifacts
