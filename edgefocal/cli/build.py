"""`edgefocal build`: a recipe (or the default one) with flags overriding its fields, built, verified and
gated (edgefocal/pipeline.py); --junit and --summary for CI."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edgefocal.backends import AUTO, names
from edgefocal.core import PRECISIONS
from edgefocal.errors import BadInput
from edgefocal.plan import PRESETS

if TYPE_CHECKING:
    from edgefocal.recipe import Overrides


def add_parser(sub) -> None:
    b = sub.add_parser("build", help="prune, quantize, export, verify and gate (default command)")
    b.set_defaults(prog=b.prog)  # "edgefocal build": what a bad flag's error starts with
    b.add_argument("--recipe", type=Path, help="a YAML recipe (see recipes/); flags below override its fields")
    b.add_argument("--target", help=f"{', '.join(names())}, {AUTO}, or a comma-separated list")
    b.add_argument("--precision", choices=PRECISIONS, help="what the requested artifacts compute in")
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
    b.add_argument("--max-top1-drop", type=float, help="gate: points of top-1 the requested artifacts may lose")
    b.add_argument("--min-agreement", type=float, help="gate: minimum top-1 agreement with the FP32 reference")
    b.add_argument("--min-speedup", type=float, help="gate: minimum speedup vs the reference at the smallest batch")
    b.add_argument("--max-cold-start-ms", type=float, help="gate: median cold start (load + compile) in ms")
    b.add_argument("--max-serving-memory-mb", type=float, help="gate: peak serving memory at the largest batch, MB")
    b.add_argument("--batch-sizes", help="comma-separated benchmark batch sizes, e.g. 1,8")
    b.add_argument("--quant-preset", choices=tuple(PRESETS),
                   help="INT8 precision policy for every target (focalnet: dense convs INT8; depthwise convs, "
                        "gate products, global context and head float)")
    b.add_argument("--coreml-compression", choices=("w8", "w8a8", "palettize", "sparse"),
                   help="coreml: what --precision int8 builds")
    b.add_argument("--require-engine", action="store_true", help="tensorrt: fail when no engine can be built here")
    b.add_argument("--profile", action="store_true",
                   help="profile every requested artifact at batch 1 after verifying it: profile.json and a chart")
    b.add_argument("--output", "-o", type=Path, help="output directory (replaced atomically)")
    b.add_argument("--quiet", action="store_true", help="no progress bars or table")
    b.add_argument("--baseline", type=Path, help="gate against a previous build (its report.json or output directory)")
    add_regression_flags(b)
    add_ci_output_flags(b)


def add_regression_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-top1-regression", type=float, help="points of top-1 an artifact may lose vs the baseline")
    p.add_argument("--max-agreement-regression", type=float, help="points of agreement it may lose vs the baseline")
    p.add_argument("--max-speedup-regression", type=float, help="fraction of its same-run speedup it may lose")
    p.add_argument("--max-size-growth", type=float, help="fraction its size may grow")
    p.add_argument("--max-memory-growth", type=float,
                   help="fraction its serving memory, as a ratio to the same-run FP32 reference, may grow")
    p.add_argument("--max-cold-start-regression", type=float,
                   help="fraction its cold start, as a ratio to the same-run FP32 reference, may grow")
    p.add_argument("--on-unstable", choices=("fail", "warn"), help="what an inconclusive latency gate does")


def add_ci_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--junit", type=Path, help="write JUnit XML here (a testcase per gate per artifact)")
    p.add_argument("--summary", type=Path, help="append markdown here (e.g. $GITHUB_STEP_SUMMARY)")


REGRESSION_FLAGS = ("max_top1_regression", "max_agreement_regression", "max_speedup_regression", "max_size_growth",
                    "max_memory_growth", "max_cold_start_regression", "on_unstable")


def given(attr: str, value=True) -> str:
    """A flag as the user gave it, for error messages: `--batch-sizes 0`, `--trust-checkpoint`."""
    flag = "--" + attr.replace("_", "-")
    if value is True:
        return flag
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


def regression_overrides(args: argparse.Namespace, o: Overrides | None = None) -> Overrides:
    from edgefocal.recipe import Overrides

    o = Overrides(origin=getattr(args, "prog", None)) if o is None else o
    for a in REGRESSION_FLAGS:
        if (value := getattr(args, a)) is not None:
            o.set(f"gates.{a}", value, given(a, value))
    return o


def ci_outputs(args: argparse.Namespace, suite: str, gates, report: dict | None, comparison=None) -> None:
    """--junit and --summary, written whether the gates passed or not (CI needs them most when not)."""
    from edgefocal.junit import write_junit
    from edgefocal.summary import append_summary, summary_markdown

    if args.junit:
        write_junit(args.junit, {suite: gates})
    if args.summary and report is not None:
        append_summary(args.summary, summary_markdown(report, gates, comparison))


SIMPLE_FLAGS = {"precision": "precision", "model": "model.name", "checkpoint": "model.checkpoint",
                "num_classes": "model.num_classes", "calib_size": "calibration.size", "eval_size": "eval.size",
                "max_top1_drop": "gates.max_top1_drop", "min_agreement": "gates.min_agreement",
                "min_speedup": "gates.min_speedup", "output": "output", "max_cold_start_ms": "gates.max_cold_start_ms",
                "max_serving_memory_mb": "gates.max_serving_memory_mb", "quant_preset": "quantize.preset",
                "coreml_compression": "coreml.compression", "baseline": "gates.baseline"}  # flag -> recipe field


def overrides_from_args(args: argparse.Namespace) -> Overrides:
    """The recipe fields the flags set, each remembering its flag: a value the recipe rejects is reported as
    `edgefocal build: --batch-sizes 0: bench.batch_sizes: ...`, not as an error in the recipe file."""
    from edgefocal.recipe import Overrides

    o = Overrides(origin=getattr(args, "prog", "edgefocal build"))
    if args.target:
        o.set("targets", [t.strip() for t in args.target.split(",") if t.strip()], given("target", args.target))
    for attr, key in SIMPLE_FLAGS.items():
        value = getattr(args, attr)
        if value is not None:
            o.set(key, str(value) if isinstance(value, Path) else value, given(attr, value))
    regression_overrides(args, o)
    if args.trust_checkpoint:
        o.set("model.trust_checkpoint", True, given("trust_checkpoint"))
    if args.require_engine:
        o.set("tensorrt.require_engine", True, given("require_engine"))
    if args.profile:
        o.set("bench.profile", True, given("profile"))
    if args.calibration:
        o.set("calibration", args.calibration, given("calibration", args.calibration))
    if args.calib_dir:
        for key, value in (("calibration.source", "imagefolder"), ("calibration.path", str(args.calib_dir))):
            o.set(key, value, given("calib_dir", args.calib_dir))
    if args.eval_dir:
        for key, value in (("eval.source", "imagefolder"), ("eval.path", str(args.eval_dir))):
            o.set(key, value, given("eval_dir", args.eval_dir))
    if args.data_root:
        for key in ("calibration.path", "eval.path"):
            o.set(key, str(args.data_root), given("data_root", args.data_root))
    if args.batch_sizes:
        flag, hint = given("batch_sizes", args.batch_sizes), "comma-separated batch sizes ≥ 1, e.g. --batch-sizes 1,8"
        try:
            o.set("bench.batch_sizes", [int(x) for x in args.batch_sizes.split(",")], flag, hint)
        except ValueError:
            raise BadInput(f"{o.origin}: {flag}: not a list of integers", hint=hint) from None
    if args.prune:
        from edgefocal.prune import parse_prune_flag

        flag = given("prune", args.prune)
        try:
            fields = parse_prune_flag(args.prune)
        except BadInput as e:
            raise BadInput(f"{o.origin}: {e}", hint=e.hint) from e
        for k, v in fields.items():
            o.set(f"prune.{k}", v, flag, hint="channels:RATIO removes that fraction of the model's MACs, "
                  "0 < RATIO < 1 (e.g. --prune channels:0.3); or 2:4[:wanda], or none")
    return o


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edgefocal.pipeline import build, raise_on_failed_gates
    from edgefocal.recipe import load_recipe

    recipe = load_recipe(args.recipe or default_recipe(), overrides_from_args(args))
    console = None if args.quiet else Console(width=None if sys.stdout.isatty() else 160)
    result = build(recipe, console)
    ci_outputs(args, f"{result.report['model']['name']} build", result.gates, result.report)
    raise_on_failed_gates(result)
    return 0


def default_recipe() -> Path | None:
    """recipes/default.yaml in a source checkout; else the built-in defaults."""
    from edgefocal.recipe import REPO_ROOT

    default = REPO_ROOT / "recipes" / "default.yaml"
    return default if default.is_file() else None
