"""Core ML target: an .mlpackage (ML program) that Xcode loads as is, compressed with coremltools, and
verified on Linux by edgefocal's numpy ML-program executor (Core ML itself predicts only on macOS).

- conversion: torch.jit.trace → coremltools ML program; image input with the model's normalization folded
  into the program (or a tensor input), class labels attached (a classifier), fixed or ranged batch.
- int8 = the recipe's `coreml.compression`: w8 (per-channel INT8 weights), w8a8 (plus INT8 activations),
  palettize (k-means LUT) or sparse. W8A8 on Linux: coremltools' `linear_quantize_activations` gets its
  activation ranges from Core ML prediction (macOS only), so we measure the same per-tensor ranges by
  running the float program in our executor on the calibration set, and hand them to the very graph passes
  `linear_quantize_activations` uses (quantize/dequantize pairs before conv/linear/add inputs).
"""
from __future__ import annotations

import json
import platform
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgefocal._deps import require
from edgefocal.errors import BadInput
from edgefocal.targets.base import Artifact, Availability, BuildContext, Runner, Target

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


# ---------------------------------------------------------------- compression


def _to_program_input(x: np.ndarray, image_input: bool, mean, std) -> np.ndarray:
    """Normalized NCHW (what the pipeline feeds) → what the package takes (pixels 0..255 for an image)."""
    if not image_input:
        return np.asarray(x, np.float32)
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return (np.asarray(x, np.float32) * s + m) * 255.0


def activation_ranges(package: Path, calibration: np.ndarray, mean=None, std=None, batch: int = 32) -> dict:
    """Per-tensor {var name: {"rmin", "rmax"}} of every activation of a float .mlpackage over the
    calibration set, measured with the numpy executor: the statistics coremltools' linear_quantize_activations
    would collect with Core ML prediction on macOS."""
    from edgefocal.coreml_exec import MLProgramExecutor

    ex = MLProgramExecutor(package)
    stats: dict[str, dict[str, float]] = defaultdict(dict)

    def observe(name: str, value) -> None:
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            return
        lo, hi = float(value.min()), float(value.max())
        s = stats[name]
        s["rmin"] = min(lo, s.get("rmin", lo))
        s["rmax"] = max(hi, s.get("rmax", hi))

    for i in range(0, len(calibration), batch):
        ex.run(_to_program_input(calibration[i:i + batch], ex.info.image_input, mean, std), observe=observe)
    return dict(stats)


def quantize_activations(mlmodel, stats: dict, mode: str = "linear_symmetric"):
    """Insert INT8 quantize/dequantize pairs from calibrated ranges: coremltools' own passes from
    linear_quantize_activations, fed our statistics instead of macOS prediction."""
    cto = require("coremltools.optimize.coreml", "coreml")
    from coremltools import _SPECIFICATION_VERSION_IOS_17
    from coremltools.converters.mil.frontend.milproto import load as milproto_load
    from coremltools.converters.mil.mil.passes.graph_pass import PassOption
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
    from coremltools.models.utils import _apply_graph_pass

    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode=mode, dtype="int8"))
    passes = []
    for name in ("compression::insert_prefix_quantize_dequantize_pair",
                 "compression::insert_suffix_quantize_dequantize_pair"):
        p = PASS_REGISTRY[name]
        p.set_options([PassOption("config", config), PassOption("activation_stats", stats)])
        passes.append(p)
    passes.append(PASS_REGISTRY["common::dequantize_quantize_pair_elimination"])
    return _apply_graph_pass(mlmodel, passes, spec_version=_SPECIFICATION_VERSION_IOS_17,
                             pymil_load_func=milproto_load.load, skip_model_load=True)


def _weights_config(spec, kind: str):
    cto = require("coremltools.optimize.coreml", "coreml")
    if kind == "w8":
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                         weight_threshold=spec.weight_threshold)
    elif kind == "palettize":
        op = cto.OpPalettizerConfig(mode="kmeans", nbits=spec.palettize_bits, weight_threshold=spec.weight_threshold)
    elif spec.sparsity is None:  # encode the zeros the pruning step left (tensors ≥ 30 % zeros)
        op = cto.OpThresholdPrunerConfig(threshold=1e-12, minimum_sparsity_percentile=0.3,
                                         weight_threshold=spec.weight_threshold)
    else:
        op = cto.OpMagnitudePrunerConfig(target_sparsity=spec.sparsity, weight_threshold=spec.weight_threshold)
    return cto.OptimizationConfig(global_config=op)


def _computes_in_fp16(mlmodel) -> bool:
    from coremltools.converters.mil.mil import types

    prog = mlmodel._mil_program
    if prog is None:  # loaded from disk: read the program from its proto
        from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

        spec = mlmodel.get_spec()
        prog = milproto_load(spec, spec.specificationVersion, mlmodel.weights_dir)
    return any(op.op_type == "cast" and op.outputs[0].dtype == types.fp16
               for op in prog.functions["main"].operations)


def compress(mlmodel, spec, calibration: np.ndarray | None, data_config: dict, scratch: Path, log=print):
    """The recipe's int8 compression of a float ML program; returns (MLModel, facts for the report)."""
    cto = require("coremltools.optimize.coreml", "coreml")
    kind = spec.compression
    facts: dict = {"compression": kind}
    if kind == "w8a8":
        if not _computes_in_fp16(mlmodel):
            raise BadInput("W8A8 needs an FP16-compute program (coremltools' activation quantization writes FP16 "
                           "scales)", hint="set coreml.compute_precision: fp16, or use compression: w8")
        if calibration is None or len(calibration) == 0:
            raise BadInput("W8A8 needs calibration images", hint="set calibration in the recipe")
        float_pkg = scratch / "float_for_calibration.mlpackage"
        mlmodel.save(str(float_pkg))
        log(f"calibrating Core ML activations on {len(calibration)} images (numpy executor)")
        stats = activation_ranges(float_pkg, calibration, data_config["mean"], data_config["std"])
        mlmodel = quantize_activations(mlmodel, stats, spec.activation_mode)
        facts.update(calibration_images=int(len(calibration)), activation_mode=spec.activation_mode,
                     activation_ranges_from="edgefocal numpy executor (FP program) on the calibration set")
        kind = "w8"
    if kind == "w8":
        mlmodel = cto.linear_quantize_weights(mlmodel, _weights_config(spec, "w8"))
    elif kind == "palettize":
        mlmodel = cto.palettize_weights(mlmodel, _weights_config(spec, "palettize"))
        facts["palettize_bits"] = spec.palettize_bits
    elif kind == "sparse":
        mlmodel = cto.prune_weights(mlmodel, _weights_config(spec, "sparse"))
        facts["sparsity_target"] = spec.sparsity if spec.sparsity is not None else "zeros already in the weights"
    return mlmodel, facts


def compression_stats(package: Path) -> dict:
    """Counts of compressed weight tensors and activation Q/DQ ops, and the package's op census."""
    from edgefocal.coreml_exec import op_census, read_program

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
        from edgefocal.coreml_exec import MLProgramExecutor

        self.executor = MLProgramExecutor(self.artifact)
        self.mean, self.std = _normalization(self.artifact)
        if self.executor.info.image_input and self.mean is None:
            raise BadInput(f"{self.artifact} takes an image but carries no edgefocal normalization metadata",
                           hint="build it with edgefocal, or convert with input_type tensor")

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = _to_program_input(x, self.executor.info.image_input, self.mean, self.std)
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
        from edgefocal.coreml_exec import read_program

        _, self.info = read_program(self.artifact)
        self.model = ct.models.MLModel(str(self.artifact), compute_units=getattr(ct.ComputeUnit, self.compute_units))
        self.mean, self.std = _normalization(self.artifact)
        self.device = f"Core ML ({self.compute_units}, {platform.machine()})"

    def _feed(self, x: np.ndarray) -> dict:
        if not self.info.image_input:
            return {self.info.input_name: x}
        from PIL import Image

        pixels = np.clip(np.rint(_to_program_input(x, True, self.mean, self.std)), 0, 255).astype(np.uint8)[0]
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


class CoreMLTarget(Target):
    name = "coreml"
    precisions = ("fp32", "fp16", "int8")
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

    def _runner(self, path: Path):
        return (lambda: CoreMLRunner(path)) if on_macos() else (lambda: CoreMLExecutorRunner(path))

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

    def build(self, ctx: BuildContext, precision: str) -> list[Artifact]:
        self.check_precision(precision)
        spec = ctx.recipe.coreml
        target = spec.deployment_target(precision)
        if precision == "int8" and spec.compression == "w8a8" and target in _NEEDS_IOS17:
            raise BadInput(f"coreml.compression w8a8 needs minimum_deployment_target iOS17/macOS14 or later, "
                           f"got {target}", hint="raise coreml.minimum_deployment_target, or use compression: w8")
        out = ctx.workdir / "coreml"
        out.mkdir(parents=True, exist_ok=True)

        ctx.log(f"converting to Core ML (ML program, {target}, FP32 compute)")
        fp32 = out / "model_fp32.mlpackage"
        coreml_from_torch(ctx.model, ctx.data_config, ctx.class_names, spec, target, "fp32").save(str(fp32))
        artifacts = [Artifact("coreml", "fp32", fp32, self._runner(fp32),
                              info=self._info(fp32, target, "fp32", spec, "FP32 compute"),
                              requested=precision == "fp32")]
        if precision == "fp16":
            fp16 = out / "model_fp16.mlpackage"
            coreml_from_torch(ctx.model, ctx.data_config, ctx.class_names, spec, target, "fp16").save(str(fp16))
            artifacts.append(Artifact("coreml", "fp16", fp16, self._runner(fp16),
                                      info=self._info(fp16, target, "fp16", spec, "FP16 compute")))
        elif precision == "int8":
            cp = spec.compute_precision
            base = coreml_from_torch(ctx.model, ctx.data_config, ctx.class_names, spec, target, cp)
            ctx.log(f"compressing for Core ML ({spec.compression})")
            with tempfile.TemporaryDirectory(dir=out) as scratch:
                mlmodel, facts = compress(base, spec, ctx.calibration, ctx.data_config, Path(scratch), ctx.log)
            path = out / f"model_{spec.compression}.mlpackage"
            if path.exists():
                shutil.rmtree(path)
            mlmodel.save(str(path))
            label = {"w8": "W8 (INT8 weights)", "w8a8": "W8A8 (INT8 weights + activations)",
                     "palettize": f"{spec.palettize_bits}-bit palettized weights", "sparse": "sparse weights"}
            facts["size_ratio_vs_fp32"] = round(package_size(path) / package_size(fp32), 4)
            artifacts.append(Artifact("coreml", "int8", path, self._runner(path),
                                      info=self._info(path, target, cp, spec,
                                                     f"{label[spec.compression]}, {cp.upper()} compute", facts)))
        return artifacts
