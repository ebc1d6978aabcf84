"""Recipes: YAML files validated by pydantic. Unknown fields and conflicting settings fail loudly;
nothing is silently fixed up (a typo in ORT's extra_options dict is ignored, a typo here is an error)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgefocal.core import Precision
from edgefocal.errors import BadInput
from edgefocal.plan import PRESETS

REPO_ROOT = Path(__file__).resolve().parent.parent


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    """Preprocessing as timm names it (`timm.data.resolve_data_config`): the fields set here win over a
    checkpoint's and the model's own. A model built from `arch` has no defaults, so it needs input_size, mean,
    std, interpolation and crop_pct from here or from its checkpoint (models.py says which are missing)."""

    input_size: tuple[int, int, int] | None = None  # (channels, height, width)
    mean: list[float] | None = None  # per channel, of pixels scaled to [0, 1]
    std: list[float] | None = None
    interpolation: Literal["nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"] | None = None
    crop_pct: float | None = Field(default=None, gt=0)  # resize to size / crop_pct, then crop to size
    crop_mode: Literal["center", "squash", "border"] | None = None

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, v):
        if v is not None and min(v) < 1:
            raise ValueError(f"input_size is (channels, height, width), each ≥ 1; got {list(v)}")
        return v

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v):
        if v is not None and any(s <= 0 for s in v):
            raise ValueError(f"std values divide the pixels and must be > 0; got {v}")
        return v

    @model_validator(mode="after")
    def _channels_agree(self):
        lengths = {k: len(v) for k, v in (("mean", self.mean), ("std", self.std)) if v is not None}
        if self.input_size is not None:
            lengths["input_size channels"] = self.input_size[0]
        if len(set(lengths.values())) > 1:
            raise ValueError("mean, std and input_size disagree on the number of channels: "
                             + ", ".join(f"{k} {n}" for k, n in lengths.items()))
        return self


class FocalNetArch(Strict):
    """Keyword arguments of timm's `timm.models.focalnet.FocalNet` (tests/test_recipe.py checks this list
    against timm's signature). Fields left out take timm's defaults; an int `focal_levels`/`focal_windows`
    applies to every stage."""

    in_chans: int = Field(default=3, ge=1)
    num_classes: int = Field(default=1000, ge=1)
    global_pool: Literal["avg", "max", "avgmax", "catavgmax"] = "avg"
    embed_dim: int = Field(default=96, ge=1)
    depths: list[int] = Field(default=[2, 2, 6, 2], min_length=1)
    mlp_ratio: float = Field(default=4.0, gt=0)
    focal_levels: int | list[int] = 2
    focal_windows: int | list[int] = 3
    use_overlap_down: bool = False
    use_post_norm: bool = False
    use_post_norm_in_modulation: bool = False
    normalize_modulator: bool = False
    head_hidden_size: int | None = Field(default=None, ge=1)
    head_init_scale: float = 1.0
    layerscale_value: float | None = None
    drop_rate: float = Field(default=0.0, ge=0, lt=1)
    proj_drop_rate: float = Field(default=0.0, ge=0, lt=1)
    drop_path_rate: float = Field(default=0.1, ge=0, lt=1)  # only matters in training; built with 0 unless set

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data):
        """An unknown key is named with the closest FocalNet argument, not just 'extra inputs'."""
        import difflib

        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    close = difflib.get_close_matches(str(key), list(cls.model_fields), n=1)
                    raise ValueError(f"'{key}' is not an argument of timm's FocalNet"
                                     + (f"; did you mean '{close[0]}'?" if close else "")
                                     + f" (it takes {', '.join(cls.model_fields)})")
        return data

    @model_validator(mode="after")
    def _per_stage(self):
        for key in ("focal_levels", "focal_windows"):
            value = getattr(self, key)
            if isinstance(value, list) and len(value) != len(self.depths):
                raise ValueError(f"{key} has {len(value)} values but depths has {len(self.depths)} stages")
            if min(value if isinstance(value, list) else [value]) < 1:
                raise ValueError(f"{key} must be ≥ 1; got {value}")
        if min(self.depths) < 1:
            raise ValueError(f"every stage needs at least one block; got depths {self.depths}")
        return self

    def kwargs(self) -> dict:
        """The arguments as FocalNet takes them: per-stage tuples, only the fields the recipe set (and a
        drop_path_rate of 0: the model is evaluated, never trained here)."""
        out = self.model_dump(exclude_unset=True)
        for key in ("focal_levels", "focal_windows"):
            if key in out:
                value = out[key]
                out[key] = tuple(value) if isinstance(value, list) else (value,) * len(self.depths)
        if "depths" in out:
            out["depths"] = tuple(out["depths"])
        out.setdefault("drop_path_rate", 0.0)
        return out


class ModelSpec(Strict):
    """Which FocalNet: a timm focalnet_* name, the embedded default, or `focalnet` built from `arch`."""

    name: str = "edgefocal-fmnist"  # a timm focalnet_* name, "focalnet" (built from arch), or the embedded default
    arch: FocalNetArch | None = None  # with name: focalnet
    checkpoint: Path | None = None  # .safetensors/.pth: timm (incl. train.py's), or official microsoft/FocalNet
    num_classes: int | None = Field(default=None, ge=1)
    trust_checkpoint: bool = False  # allow full unpickling (official checkpoints embed a yacs config)
    data_config: DataConfig = DataConfig()  # preprocessing overrides, for any model
    class_names: list[str] | None = None  # index order of the classifier's outputs

    @model_validator(mode="after")
    def _arch_goes_with_focalnet(self):
        if self.name == "focalnet" and self.arch is None:
            raise ValueError("name focalnet builds timm's FocalNet from model.arch: add arch (embed_dim, depths, ...)")
        if self.arch is not None and self.name != "focalnet":
            raise ValueError(f"model.arch is used only with name: focalnet (name is '{self.name}'): "
                             "drop arch, or set name: focalnet")
        if self.arch is not None and self.num_classes is not None and "num_classes" in self.arch.model_fields_set \
                and self.arch.num_classes != self.num_classes:
            raise ValueError(f"num_classes {self.num_classes} and arch.num_classes {self.arch.num_classes} disagree")
        return self


class DataSpec(Strict):
    source: Literal["fashion-mnist", "imagefolder", "digits"] = "fashion-mnist"
    path: Path | None = None  # idx directory for fashion-mnist, the root for imagefolder
    split: Literal["train", "test"] = "test"
    size: int | None = Field(default=None, ge=1)  # None: every item (eval); calibration needs a size
    seed: int = 0


class CalibrationSpec(DataSpec):
    split: Literal["train", "test"] = "train"
    size: int = Field(default=300, ge=1)


class QuantizeSpec(Strict):
    """INT8 post-training quantization for every target, under one precision plan (precision/policy.py), with
    the mixed-precision search (precision/search.py) as the one mechanism that keeps parts float for accuracy."""

    preset: str = "focalnet"  # which roles run INT8: a name in plan.PRESETS (precision/policy.py)
    float_modules: list[str] = []  # regexes over torch module paths kept float, e.g. "layers\\.3\\..*fc2$"
    # activation ranges: min-max over the calibration set (measured on FocalNets: NNCF's transformer default,
    # mean of per-image quantiles, clips the rare large post-LayerNorm values that decide near-ties)
    range_estimator: Literal["min_max", "nncf_default"] = "min_max"
    fast_bias_correction: bool = True
    # mixed precision (precision/search.py): keep the parts whose INT8 costs most agreement per cost float until
    # held-out agreement with FP32 reaches this; "auto": gates.min_agreement (0.995 if unset) plus the
    # margin at which the eval agreement meets it 19 times in 20 (precision/search.py auto_target_agreement); null: no search
    target_agreement: float | Literal["auto"] | None = "auto"
    max_latency_cost: float = Field(default=0.10, ge=0, le=1)  # the float parts' cost, as a fraction of:
    # "macs": the INT8 parts' MACs (reproducible); "measured": the INT8 latency, profiled (moves with load)
    latency_cost: Literal["macs", "measured"] = "macs"
    selection_size: int = Field(default=4000, ge=10)  # held-out images the search chooses on
    validation_size: int = Field(default=1000, ge=10)  # other held-out images the choice is validated on
    search_seconds: float = Field(default=180, gt=0)  # the scan measures on fewer images to fit (at a nominal MAC rate)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown preset '{v}'; use one of: {', '.join(PRESETS)}")
        return v

    @field_validator("float_modules")
    @classmethod
    def _regexes(cls, v):
        import re

        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ValueError(f"'{pattern}' is not a regular expression ({e})") from None
        return v


class PruneSpec(Strict):
    """Pruning before quantization (edgefocal/prune). `ratio` counts the whole model's conv/linear MACs at
    its input size, not channels; the report gives both."""

    method: Literal["none", "channels", "2:4"] = "none"
    ratio: float = Field(default=0.0, ge=0.0, lt=1.0)  # channels: fraction of the model's MACs removed
    stage_ratios: list[float] | None = None  # channels: fraction of each stage's MACs, instead of ratio
    stage_weights: list[float] | None = None  # channels: relative channel fraction per stage under `ratio`
    # channels, without stage_weights/stage_ratios: how the MAC budget is spread over the stages. "macs": the same
    # channel fraction in every stage, from the MAC counts alone (prune/macs.py), so the same recipe prunes the
    # same channels on any machine under any load; "latency": each stage weighted by the INT8 target's measured
    # time per MAC there (prune/latency.py; early, high-resolution stages carry most LayerNorm/GELU/depthwise
    # time, so weighting them up can buy latency), which moves with the machine's load: for a quiet device, and
    # pin the weights it reports with stage_weights to rebuild alike
    allocation: Literal["macs", "latency"] = "macs"
    exclude: list[str] = []  # regexes over module names left untouched (e.g. "layers\\.3\\.", "mlp$")
    groups: list[Literal["mlp", "modulator", "context"]] = ["mlp", "modulator", "context"]
    group_weights: dict[Literal["mlp", "modulator", "context"], float] = {}  # relative share per group (1.0)
    round_to: int = Field(default=16, ge=1)  # kept channels are multiples of this (≤ width/4; SIMD-friendly)
    reconstruct: bool = True  # least-squares repair of the next layer from calibration activations
    damping: float = Field(default=0.01, gt=0)  # ridge λ as a fraction of the mean activation energy
    solver: Literal["sparsegpt", "wanda"] = "sparsegpt"  # 2:4: SparseGPT updates from Hessians, or Wanda
    # short distillation from the unpruned FP32 model on unlabeled held-out images of the calibration source
    # (prune/recover.py), bounded by MACs so that a heavy model is not trained for hours: 600 steps of 128
    # images cost ~1000 GMACs on the 32² default, ~1 M on a 224² FocalNet-T; 0: none (recipes/default.yaml: 600)
    recover_steps: int = Field(default=0, ge=0)
    recover_images: int = Field(default=8000, ge=0)  # held-out images distilled on (0: the calibration images)
    recover_max_gmacs: float | None = Field(default=2000, gt=0)  # at most this much training work; None: no bound

    @field_validator("stage_ratios")
    @classmethod
    def _fractions(cls, v):
        if v is not None and any(not 0 <= r < 1 for r in v):
            raise ValueError("stage_ratios are fractions of MACs in [0, 1)")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.method == "none" and (self.ratio or self.stage_ratios):
            raise ValueError("a ratio is set but method is none: set method channels or drop the ratio")
        if self.method == "channels" and not self.ratio and not self.stage_ratios:
            raise ValueError("method channels needs ratio > 0 (fraction of MACs) or stage_ratios")
        if self.method == "channels" and self.ratio and self.stage_ratios:
            raise ValueError("set either ratio or stage_ratios, not both")
        if self.method == "2:4" and (self.ratio not in (0.0, 0.5) or self.stage_ratios):
            raise ValueError("2:4 sparsity always removes half of each 1×1 conv's weights: drop ratio/stage_ratios")
        if self.stage_weights is not None and (self.stage_ratios or any(w <= 0 for w in self.stage_weights)):
            raise ValueError("stage_weights are positive and scale `ratio`; they cannot go with stage_ratios")
        if any(w <= 0 for w in self.group_weights.values()):
            raise ValueError("group_weights are positive relative shares; drop a group from `groups` instead of 0")
        if self.method == "channels" and not self.groups:
            raise ValueError("method channels needs at least one of groups: mlp, modulator, context")
        return self


class TensorRTSpec(Strict):
    require_engine: bool = False
    workspace_mib: int = Field(default=2048, ge=64)
    min_batch: int = Field(default=1, ge=1)
    opt_batch: int = Field(default=8, ge=1)
    max_batch: int = Field(default=32, ge=1)
    timing_cache: Path | None = None
    dla_core: int | None = Field(default=None, ge=0)
    sparse_weights: bool | None = None  # None: on when the model was 2:4-pruned
    trtexec: Path | None = None
    # who writes the INT8 Q/DQ ONNX: edgefocal (NNCF plus fusion pairs, backends/tensorrt/qdq.py) or NVIDIA
    # ModelOpt's ONNX PTQ (backends/tensorrt/modelopt_qdq.py, pip install 'edgefocal[modelopt]'); same plan, same checks
    qdq_producer: Literal["edgefocal", "modelopt"] = "edgefocal"
    # `edgefocal engine --compare`: Polygraphy's CompareFunc.simple bounds, per logit (absolute or relative).
    # Measured: edgefocal's Q/DQ ONNX (ONNX Runtime) vs torch FP32 on the embedded default, 512 Fashion-MNIST
    # test images: max |diff| 0.46, mean 0.035, for logits up to 4.3; wrong scales miss by whole units
    compare_atol: float = Field(default=1.0, gt=0)
    compare_rtol: float = Field(default=0.1, ge=0)

    @model_validator(mode="after")
    def _batches_ordered(self):
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need min_batch ≤ opt_batch ≤ max_batch, got {self.min_batch}/{self.opt_batch}/{self.max_batch}")
        return self


class CoreMLSpec(Strict):
    """Core ML (.mlpackage, ML program). `compression` is what `--precision int8` builds: INT8 weights (w8),
    INT8 weights + activations calibrated on the recipe's calibration set (w8a8, needs iOS17/macOS14),
    a k-means weight palette (palettize, `palettize_bits`) or sparse weights (sparse: zeros the pruning
    step left, or coremltools' magnitude pruner at `sparsity`)."""

    minimum_deployment_target: Literal["auto", "iOS16", "iOS17", "iOS18", "macOS13", "macOS14", "macOS15"] = "auto"
    input_type: Literal["image", "tensor"] = "image"  # image: pixels 0..255, the normalization folded in
    class_labels: bool = True  # a classifier model, so Xcode's preview shows class names
    compression: Literal["w8", "w8a8", "palettize", "sparse"] = "w8a8"
    compute_precision: Literal["fp16", "fp32"] = "fp16"  # of the int8 artifact (fp16 is what the ANE runs)
    # w8a8 activations: linear (asymmetric, a zero point) fits post-GELU and post-LayerNorm ranges that are far
    # from symmetric (the default, 10k test images: 99.43 % agreement symmetric, 99.61 % asymmetric)
    activation_mode: Literal["linear_symmetric", "linear"] = "linear"
    palettize_bits: Literal[4, 6, 8] = 6
    sparsity: float | None = Field(default=None, gt=0, lt=1)  # None: encode the zeros already in the weights
    weight_threshold: int = Field(default=2048, ge=1)  # smaller weight tensors stay float
    batch: int | tuple[int, int] = 1  # fixed batch, or (min, max) for a ranged batch

    @field_validator("batch")
    @classmethod
    def _batch(cls, v):
        lo, hi = (v, v) if isinstance(v, int) else v
        if lo < 1 or hi < lo:
            raise ValueError(f"batch must be ≥ 1, or (min, max) with 1 ≤ min ≤ max; got {v}")
        return v

    def deployment_target(self, precision: str) -> str:
        """'auto' is iOS16 (macOS13), except iOS17 where an int8 W8A8 build needs it (the target refuses an
        explicit iOS16/macOS13 for W8A8 at build time)."""
        if self.minimum_deployment_target != "auto":
            return self.minimum_deployment_target
        return "iOS17" if precision == "int8" and self.compression == "w8a8" else "iOS16"


class BenchSpec(Strict):
    batch_sizes: list[int] = [1, 8]
    warmup: int = Field(default=10, ge=0)
    iterations: int = Field(default=50, ge=3)
    rounds: int = Field(default=5, ge=1)  # runners are timed interleaved, round by round
    # at most this many GMACs per runner and batch size (warmup and timed runs together): a heavy model gets
    # fewer warmup and timed runs, at least 2 per round (verify/bench.py bounded_counts); null: no bound
    max_gmacs: float | None = Field(default=300, gt=0)
    threads: int | None = None  # CPU threads for every runner; None: all cores
    # fresh processes per report row for the serving figures (cold start, first inference, memory; the first also
    # checks batch consistency over the eval set, verify/serving.py); 0: not measured
    cold_start_runs: int = Field(default=3, ge=0)
    # eval images the batch-consistency pass serves at batch 1 and at the largest batch (3 passes per row): its
    # cost is bounded, not the eval set's; 0: every eval image
    consistency_images: int = Field(default=1000, ge=0)
    # eval images the artifacts a build makes but does not gate are checked on (an INT8 build's FP32 ones, made to
    # time it against): the first N; null: every one. At 224² each pass over 2000 images takes minutes.
    unrequested_images: int | None = Field(default=500, ge=1)
    # ... and at most this many GMACs per row for that pass, its three passes together: the default checks its
    # 1000 images, a 224² FocalNet-T (4.40 GMACs an image, measured) 151 (verify/serving.py consistency_count); null: no bound
    consistency_max_gmacs: float | None = Field(default=2000, gt=0)
    # profile every requested artifact whose runtime edgefocal profiles, at batch 1, after verifying it: where
    # its time goes per FocalNet part and op kind (verify/profile.py), into profile.json and a report.html chart
    profile: bool = False

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, v):
        if not v or any(b < 1 for b in v):
            raise ValueError("batch_sizes needs at least one positive batch size")
        return v


class Gates(Strict):
    """Bounds a build must meet. The first three bound an artifact against the FP32 reference of the
    same run; the `*_regression`/`max_size_growth` bounds compare it with the same artifact in a baseline
    report (a previous accepted build) and apply only when a baseline is given; the latency settings
    decide when a latency figure is too noisy to gate on (the gate is then `inconclusive`)."""

    max_top1_drop: float | None = Field(default=None, ge=0)  # points, vs the FP32 reference
    min_agreement: float | None = Field(default=None, gt=0, le=1)
    # in a pruned build the two above bound what INT8 costs on top of pruning (against the pruned FP32 model),
    # and these what pruning alone costs (the pruned FP32 model against the reference; gate.py prune_gates)
    prune_max_top1_drop: float | None = Field(default=None, ge=0)  # points
    prune_min_agreement: float | None = Field(default=None, gt=0, le=1)
    min_speedup: float | None = Field(default=None, gt=0)  # reference p50 / artifact p50 at the smallest batch
    # --- against a baseline report (report.json or its directory); None turns a bound off ---
    baseline: Path | None = None
    max_top1_regression: float | None = Field(default=0.2, ge=0)  # points of top-1 lost vs the baseline
    max_agreement_regression: float | None = Field(default=0.2, ge=0)  # points of agreement lost
    max_speedup_regression: float | None = Field(default=0.10, ge=0, lt=1)  # fraction of the same-run ratio
    max_size_growth: float | None = Field(default=0.05, ge=0)  # fraction of the baseline's artifact size
    max_memory_growth: float | None = Field(default=0.10, ge=0)  # fraction of the same-run memory ratio to FP32
    max_cold_start_regression: float | None = Field(default=0.50, ge=0)  # fraction of the same-run cold-start ratio
    # --- serving (verify/serving.py), against absolute bounds; cold start and memory judged over their runs ---
    max_cold_start_ms: float | None = Field(default=None, gt=0)  # median load + compile in a fresh process
    max_serving_memory_mb: float | None = Field(default=None, gt=0)  # peak resident memory at the largest batch
    require_consistent_batches: bool = True  # same top-1 for every eval image at batch 1 and the largest batch
    # --- latency stability: a latency gate passes or fails only on a stable measurement ---
    on_unstable: Literal["fail", "warn"] = "warn"  # what an inconclusive latency gate does to the build
    max_latency_spread: float = Field(default=0.20, gt=0)  # (high - low) / median of the per-round ratios
    max_reference_drift: float = Field(default=0.25, gt=0)  # max/min - 1 of the reference's round medians
    max_foreign_load: float = Field(default=0.25, ge=0, le=1)  # other processes' CPU share of the machine
    max_latency_rounds: int = Field(default=10, ge=1)  # re-measure up to this many rounds when unstable


class Recipe(Strict):
    model: ModelSpec = ModelSpec()
    targets: list[str] = ["auto"]  # "auto": the best target this machine can build and run
    precision: Precision = "int8"
    calibration: CalibrationSpec = CalibrationSpec()
    eval: DataSpec = DataSpec()
    quantize: QuantizeSpec = QuantizeSpec()
    prune: PruneSpec = PruneSpec()
    tensorrt: TensorRTSpec = TensorRTSpec()
    coreml: CoreMLSpec = CoreMLSpec()
    bench: BenchSpec = BenchSpec()
    gates: Gates = Gates()
    output: Path = Path("build/edgefocal")


class Overrides(dict):
    """Dotted recipe fields → values, as `load_recipe` applies them over a recipe file, remembering the flag
    that set each (`--prune channels:1.5`): a value the recipe rejects is then reported against that flag,
    not against the recipe file the user never edited."""

    def __init__(self, origin: str | None = None):
        super().__init__()
        self.origin = origin  # who sets them, e.g. "edgefocal build": the prefix of its errors
        self.flags: dict[str, str] = {}  # dotted field -> the flag as given, e.g. "--batch-sizes 0"
        self.hints: dict[str, str] = {}  # flag as given -> what a good value looks like

    def set(self, field: str, value: Any, flag: str, hint: str | None = None) -> None:
        self[field] = value
        self.flags[field] = flag
        if hint:
            self.hints[flag] = hint


_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", "≥"), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "≤")}


def _loc(err) -> str:
    return ".".join(str(p) for p in err["loc"])


def _describe(err) -> str:
    """One pydantic error as `field: what is wrong` (a bound as `field must be < 1, got 1.5`)."""
    where = _loc(err) or "(top level)"
    if err["type"] in _BOUNDS:
        key, op = _BOUNDS[err["type"]]
        limit, got = (f"{v:g}" if isinstance(v, float) else v for v in (err["ctx"][key], err["input"]))
        return f"{where} must be {op} {limit}, got {got}"
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"


def _format_errors(errors) -> str:
    return "; ".join(_describe(err) for err in errors)


def _related(loc: str, field: str) -> bool:
    """Whether an error at `loc` can come from setting `field`: the field itself, inside its value, or a
    check over the section that holds it (`prune` for `prune.ratio`)."""
    return loc == field or loc.startswith(field + ".") or (bool(loc) and field.startswith(loc + "."))


def _invalid(e: ValidationError, file_data: dict, path: Path | None, overrides: dict) -> BadInput:
    """The recipe's validation error, each part reported against the flag that caused it where one did.
    An error at or under a field a flag set is that flag's; one over a whole section (a check across its
    fields) is the flag's unless the recipe file fails the same way without any flags."""
    where = f"recipe {path}" if path else "recipe"
    flags: dict[str, str] = getattr(overrides, "flags", {})
    by_flag: dict[tuple[str, ...], list] = {}  # the flags as given -> their errors
    rest = []
    file_alone: set | None = None
    flags_alone = _errors_of(set_dotted({}, {k: v for k, v in overrides.items() if k in flags}))
    for err in e.errors():
        loc = _loc(err)
        own = [field for field in flags if loc == field or loc.startswith(field + ".")]
        if own:  # the value a flag gave (the most specific flag: --calib-size within --calibration's set)
            by_flag.setdefault((flags[max(own, key=len)],), []).append(err)
            continue
        section = [field for field in flags if _related(loc, field)]
        if section:
            if file_alone is None:
                file_alone = _errors_of(file_data)
            if (loc, err["msg"]) not in file_alone:  # the recipe was fine without them
                by_flag.setdefault(tuple(dict.fromkeys(flags[f] for f in section)), []).append(
                    {**err, "msg": err["msg"] + (f" (with the rest of {where})" if _holds(file_data, loc)
                                                 and (loc, err["msg"]) not in flags_alone else "")})
                continue
        rest.append(err)
    if not by_flag:
        return BadInput(f"{where} is invalid: {_format_errors(rest)}", hint="fix the named field (see recipes/default.yaml)")
    origin = f"{overrides.origin}: " if getattr(overrides, "origin", None) else ""
    parts = [f"{', '.join(given)}: {_format_errors(errs)}" for given, errs in by_flag.items()]
    if rest:
        parts.append(f"and {where} is invalid: {_format_errors(rest)}")
    given = [f for key in by_flag for f in key]
    hints = list(dict.fromkeys(overrides.hints[f] for f in given if f in overrides.hints))
    flag_names = ", ".join(dict.fromkeys(f.split()[0] for f in given))
    return BadInput(origin + "; ".join(parts), hint="; ".join(hints) or f"give {flag_names} a value the recipe field "
                    f"takes (see {overrides.origin or 'edgefocal'} --help)")


def _holds(data: dict, loc: str) -> bool:
    """Whether recipe data sets anything at the dotted location `loc` (a section the file writes)."""
    for part in loc.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def set_dotted(data: dict, dotted: dict[str, Any]) -> dict:
    """`data` with each dotted field set: {"prune.ratio": 0} sets data["prune"]["ratio"], making sections as
    needed; a field under something that is not a section is bad input."""
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise BadInput(f"cannot set {key}: {p} is not a section", hint="check the recipe")
        node[leaf] = value
    return data


def _errors_of(data: dict) -> set[tuple[str, str]]:
    """(location, message) of each error in recipe data."""
    try:
        Recipe.model_validate(data)
    except ValidationError as e:
        return {(_loc(err), err["msg"]) for err in e.errors()}
    return set()


def resolve_calibration(value: Any, base: Path) -> Any:
    """`calibration: NAME` refers to calibration/NAME.yaml (next to the recipes, or in the repo)."""
    if not isinstance(value, str):
        return value
    for root in (base, base.parent / "calibration", REPO_ROOT / "calibration"):
        for cand in (root / value, root / f"{value}.yaml"):
            if cand.is_file():
                return yaml.safe_load(cand.read_text())
    raise BadInput(f"calibration set '{value}' was not found", hint="name a file in calibration/ or write the set inline")


def load_recipe(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe file (or the defaults), apply dotted overrides (`{"prune.ratio": 0.3}`), validate once.
    With `Overrides` (the CLI's flags), a value the recipe rejects is reported against the flag that gave it:
    `edgefocal build: --prune channels:1.5: prune.ratio must be < 1, got 1.5`."""
    data: dict[str, Any] = {}
    base = REPO_ROOT / "recipes"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"recipe {path} does not exist", hint="pass a file from recipes/ or write one")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise BadInput(f"recipe {path} is not valid YAML ({str(e).splitlines()[0]})", hint="fix the YAML syntax") from e
        if not isinstance(data, dict):
            raise BadInput(f"recipe {path} must be a mapping of fields", hint="see recipes/default.yaml")
        base = path.parent
    if "calibration" in data:
        data["calibration"] = resolve_calibration(data["calibration"], base)
    file_data = copy.deepcopy(data)
    flags = getattr(overrides, "flags", {})
    for dotted, value in (overrides or {}).items():
        try:
            if dotted == "calibration":
                value = resolve_calibration(value, base)
            set_dotted(data, {dotted: value})
        except BadInput as e:
            if dotted not in flags:
                raise
            raise BadInput(f"{overrides.origin + ': ' if overrides.origin else ''}{flags[dotted]}: {e}", hint=e.hint) from e
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise _invalid(e, file_data, path, overrides or {}) from e
