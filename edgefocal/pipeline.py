"""`edgefocal build`: load → prune → export → quantize → package per target → verify → gate → write.

Each stage lives in the module of its concept, takes and returns a small dataclass, and can be called on
its own; `build` is the table of contents. Everything is measured in this one run: the FP32 reference's
accuracy and latency are taken next to every artifact's, so ratios are honest on a noisy machine."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import edgefocal.manifest as manifest
import edgefocal.models as models
import edgefocal.report as reporting
from edgefocal.baseline import check_same_inputs, compare_reports, load_report
from edgefocal.data import BuildData, data_cache, held_out, held_out_available, load_data
from edgefocal.errors import GateFailed, Interrupted
from edgefocal.export import Exported, export
from edgefocal.gate import GateResult, check_gates, prune_gates
from edgefocal.outputs import StagedOutput
from edgefocal.progress import Progress
from edgefocal.heap import release_freed_memory
from edgefocal.stages import StageMeter
from edgefocal.prune import prune
from edgefocal.prune.macs import count
from edgefocal.backends import Backend, get_backend, resolve
from edgefocal.core import Artifact, BuildContext, jsonable
from edgefocal.precision import PrecisionPlan, plan_precision
from edgefocal.recipe import Recipe
from edgefocal.verify.compare import artifact_subject, torch_subjects, verify
from edgefocal.verify.evaluate import predict
from edgefocal.verify.serving import measure_serving
from edgefocal.verify.stability import StabilityPolicy


PROFILE_FILE = "profile.json"  # `bench.profile`'s per-op profiles, in the build's output
EXPORT_CHECK = 4  # eval images the ONNX export is checked against torch on, in one batch (bounded at any input size)


@dataclass
class BuildResult:
    output: Path
    report: dict
    gates: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


def build(recipe: Recipe, console=None, *, model: models.LoadedModel | None = None,
          data: BuildData | None = None) -> BuildResult:
    """Build, verify and gate every target of `recipe`; the output directory appears only on success.
    An already loaded `model` and `data` (the Python API's, edgefocal/api.py) replace the load and data stages."""
    progress, started = Progress(console), time.time()
    targets = prepare(recipe)
    baseline = load_report(recipe.gates.baseline) if recipe.gates.baseline else None  # a bad path fails now
    threads = set_threads(recipe.bench.threads)
    staged = StagedOutput(recipe.output)  # fails now, not after minutes of work, if unwritable or busy
    try:
        with staged, StageMeter() as meter:
            with meter.stage("load"):
                loaded = model if model is not None else models.load(recipe.model)
            progress.log(f"model {loaded.name} ({sum(p.numel() for p in loaded.model.parameters()) / 1e6:.2f}M "
                         f"params), input {tuple(loaded.data_config['input_size'])}")
            with data_cache(staged.path) as cache:
                report, gates, onnx_fp32 = _verified(recipe, targets, loaded, data, cache, baseline, threads,
                                                     staged.path, progress, started, meter)
            with meter.stage("write"):
                report.update(reporting.stage_fields(meter.to_dict()))  # the latest figures, just before writing
                write(report, gates, manifest.assemble(loaded=loaded, recipe=recipe, report=jsonable(report),
                                                       workdir=staged.path, onnx_fp32=onnx_fp32), staged.path)
            final = staged.commit()
    except KeyboardInterrupt:
        raise Interrupted("the build was interrupted; nothing was written to " + str(recipe.output),
                          hint="run the build again") from None
    if console is not None:
        reporting.render(report, gates, console)
        console.print(f"[bold]wrote[/bold] {final} in {report['seconds']:.0f} s, peak RSS "
                      f"{report.get('peak_rss_mb', 0):.0f} MB (process tree)")
    return BuildResult(final, report, gates)


@contextmanager
def _stage(meter: StageMeter, name: str) -> Iterator[None]:
    """A measured stage that gives the memory it freed back to the system as it ends (heap.py): a fragmented
    heap left by one stage otherwise lifts every later stage's peak (at 224², 626 MB more entering verify)."""
    with meter.stage(name):
        yield
    release_freed_memory()


def _verified(recipe: Recipe, targets: list[Backend], loaded, data: BuildData | None, cache: Path, baseline,
              threads: int, workdir: Path, progress: Progress, started: float,
              meter: StageMeter) -> tuple[dict, list[GateResult], Path]:
    """Data → prune → export → precision → package → verify → serving → report and gates, each stage timed
    and its peak memory kept (stages.py), with the image sets streamed from `cache` (data.data_cache), which
    is gone before anything is written."""
    with _stage(meter, "data"):
        if data is None:
            data = load_data(recipe, loaded.data_config, loaded.model.num_classes, progress, cache=cache)
    inputs = reporting.identity(loaded, data)
    if baseline is not None:  # refuse a baseline of other inputs before minutes of quantization
        check_same_inputs(baseline, inputs, f"baseline {recipe.gates.baseline}")
    with _stage(meter, "prune"):
        spec = prune_spec(recipe, loaded, data, targets, threads, progress.log)
        pruned = prune(loaded.model, data.calibration.images, spec, progress.log,
                       lambda n: held_out(data, n, recipe.calibration.seed + 2, loaded.data_config, "recovery").images)
    with _stage(meter, "export"):
        progress.log("exporting ONNX (opset 18, dynamic batch)")
        exported = export(pruned.model, loaded.data_config["input_size"], data.eval.images[:EXPORT_CHECK], workdir)
    with _stage(meter, "search"):
        graph = _onnx(exported)  # parsed once: at 224² the FP32 ONNX is 110 MB
        plan = plan_precision(graph, recipe.quantize.preset, recipe.quantize.float_modules)
        ctx = context(recipe, loaded, data, exported, pruned.stats, workdir, threads, progress)
        plan = search_precision(recipe, targets, ctx, plan, data, graph)
        del graph
    with _stage(meter, "quantize+package"):
        artifacts = [a for t in targets for a in package(t, ctx, plan)]
    with _stage(meter, "verify"):
        reference, pruned_runner, cpu_baseline = _torch_runners(loaded.model, pruned, threads)
        subjects = torch_subjects(reference, pruned_runner, cpu_baseline) + \
            [artifact_subject(a, workdir) for a in artifacts]
        gmacs = count(loaded.model, tuple(loaded.data_config["input_size"])).macs / 1e9  # the reference: the most work
        rows = verify(subjects, data.eval.images, data.eval.labels, recipe.bench, progress,
                      StabilityPolicy.from_gates(recipe.gates), gmacs)
    with _stage(meter, "serving"):
        measure_serving(subjects, data.eval.images, recipe.bench, threads, progress, gmacs)
    profiled = profile_stage(recipe, artifacts, data.eval.images[:1], threads, workdir, progress, meter)
    report = reporting.assemble(inputs=inputs, recipe=recipe, exported=exported, prune_stats=pruned.stats,
                                plan=plan if recipe.precision == "int8" else None, rows=rows,
                                reference_device=_reference_text(reference, cpu_baseline), threads=threads,
                                started=started, stages=meter.to_dict(), gmacs_per_image=round(gmacs, 4))
    if profiled is not None:
        report["profile"] = profiled
    return report, gate(recipe, report, baseline), exported.onnx


def profile_stage(recipe: Recipe, artifacts: list[Artifact], x, threads: int, workdir: Path, progress: Progress,
                  meter: StageMeter) -> dict | None:
    """`bench.profile`: the requested artifacts' per-op profiles at batch 1 into the output's profile.json;
    report.json's summary of them (None when not asked)."""
    import json

    from edgefocal.verify.profile import document, profile_artifacts, summary

    if not recipe.bench.profile:
        return None
    with meter.stage("profile"):
        profiles, skipped = profile_artifacts(artifacts, np.ascontiguousarray(x, np.float32), threads, workdir,
                                              progress.log)
        (workdir / PROFILE_FILE).write_text(json.dumps(document(profiles), indent=1) + "\n")
    return summary(profiles, skipped, PROFILE_FILE)


def gate(recipe: Recipe, report: dict, baseline: dict | None) -> list[GateResult]:
    """The recipe's bounds on the requested artifacts, and, given a baseline, the regression bounds (the
    comparison is kept in the report for the summary and report.html)."""
    gates = prune_gates(recipe.gates, report["rows"]) + \
        check_gates(recipe.gates, [r for r in report["rows"] if r.requested])
    if baseline is not None:
        comparison = compare_reports(baseline, report, recipe.gates, f"baseline {recipe.gates.baseline}")
        gates += comparison.results
        report["baseline"] = comparison.to_dict()
    return gates


def prepare(recipe: Recipe) -> list[Backend]:
    """The recipe's targets, checked before any heavy work: unknown names, precisions, missing backends."""
    from edgefocal.errors import BadInput

    targets = [get_backend(n) for n in resolve(recipe.targets)]
    for target in targets:
        target.check_precision(recipe.precision)
        avail = target.availability()
        if not avail.can_build:
            raise BadInput(f"target {target.name} cannot be built on this machine: {avail.detail}", hint=avail.fix)
        target.check_recipe(recipe)
    return targets


def prune_spec(recipe: Recipe, loaded, data: BuildData, targets: list[Backend], threads: int, log):
    """The recipe's pruning, with stage weights measured on the first target when it asks for a latency
    allocation (a given accuracy cost then buys the most speed on that runtime)."""
    from edgefocal.prune.latency import stage_latency_weights

    spec = recipe.prune
    if spec.method != "channels" or spec.allocation != "latency" or spec.stage_weights or spec.stage_ratios:
        return spec
    weights = stage_latency_weights(loaded.model, loaded.data_config["input_size"], data.calibration.images,
                                    targets[0], threads, log)
    return spec.model_copy(update={"stage_weights": weights}) if weights else spec


def set_threads(threads: int | None) -> int:
    import torch

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


def context(recipe: Recipe, loaded, data: BuildData, exported: Exported, prune_stats: dict | None, workdir: Path,
            threads: int, progress: Progress) -> BuildContext:
    """What the quantize and package stages of every target share."""
    return BuildContext(recipe=recipe, model=exported.model, data_config=loaded.data_config,
                        class_names=loaded.class_names, calibration=data.calibration.images,
                        onnx_fp32=exported.onnx, workdir=workdir, num_threads=threads, log=progress.log,
                        sparsity_2of4=bool(prune_stats and prune_stats.get("sparsity_2of4")))


def search_precision(recipe: Recipe, targets: list[Backend], ctx: BuildContext, plan: PrecisionPlan,
                     data: BuildData, onnx_model) -> PrecisionPlan:
    """Mixed precision (precision/search.py) on the requested targets this machine can run: the plan with the
    parts float that held-out agreement needs, within the latency budget."""
    from edgefocal.precision.search import affordable, choose, decision_count

    spec = recipe.quantize
    if recipe.precision != "int8" or spec.target_agreement is None:
        return plan
    ctx.log("mixed precision: quantizing once per target under the preset plan, to measure its parts")
    probes = [p for t in targets if (p := t.probe(ctx, plan)) is not None]
    macs = count(ctx.model, tuple(ctx.data_config["input_size"]))
    gate = recipe.gates.min_agreement or 0.995
    probes = affordable(probes, macs.macs, decision_count(gate) or spec.selection_size, spec.search_seconds, ctx.log)
    if not probes:
        ctx.log("mixed precision: no requested target can be measured here; the preset plan stands")
        return plan
    sets = search_sets(recipe, ctx, plan, data, macs.macs, probes)
    for warning in sets.warnings:
        ctx.log(f"mixed precision: warning: {warning}")
    ctx.log(f"mixed precision: target agreement {sets.target:.4f} on {len(sets.decide[0])} held-out images "
            f"(parts ranked on {len(sets.scan[0])}, the choice confirmed on {len(sets.confirm[0])}; "
            f"{', '.join(p.target for p in probes)}), latency budget {spec.max_latency_cost:.0%} "
            f"({'of the INT8 MACs' if spec.latency_cost == 'macs' else 'of the measured INT8 latency'})")
    result = choose(probes, plan, onnx_model, sets.decide, sets.confirm, sets.target, spec.max_latency_cost,
                    macs.per_module, ctx.log, spec.latency_cost == "measured", scan=sets.scan,
                    max_trials=sets.max_trials)
    result.plan.search = result.summary() | {"warnings": sets.warnings}
    kept = tuple(result.plan.nodes(int8=False))  # the probes' models serve packaging only if the plan stands
    ctx.quantized = {k: q for k, q in ctx.quantized.items() if k[1] == kept}
    ctx.log(f"mixed precision: {len(result.chosen)} parts float, selection {result.selection['agreement']:.4f}, "
            f"confirmed {result.validation['agreement']:.4f} on {result.validation['images']} images "
            f"({result.seconds:.0f} s)")
    return result.plan


def search_sets(recipe: Recipe, ctx: BuildContext, plan: PrecisionPlan, data: BuildData, macs_per_image: int,
                probes: list):
    """The search's held-out images (disjoint from calibration and eval) with their FP32 logits, and its target
    (precision/search.py SearchSets)."""
    from edgefocal.backends.torch import TorchRunner
    from edgefocal.precision.search import SearchSets, rankers

    def held_of(n: int):
        ctx.log(f"mixed precision: preprocessing {n} held-out images, then their FP32 logits")
        return held_out(data, n, recipe.calibration.seed + 1, ctx.data_config).images

    runner = TorchRunner(ctx.model, device="cpu", threads=ctx.num_threads)
    return SearchSets.split(held_of, held_out_available(data), recipe.quantize, recipe.gates.min_agreement or 0.995,
                            macs_per_image, sum(p.int8 for p in plan.parts), sum(p.load for p in rankers(probes)),
                            lambda images: predict(runner, images), sum(p.load for p in probes))


def package(target: Backend, ctx: BuildContext, plan: PrecisionPlan) -> list[Artifact]:
    """Quantize (for int8) and package one target: the precision is the plan's, the files the target's."""
    precision = ctx.recipe.precision
    quantized = None
    if precision == "int8":
        ctx.log(f"quantizing for {target.name} (policy '{plan.preset}')")
        quantized = target.quantized(ctx, plan, last=True)
    ctx.log(f"packaging {target.name} {precision}")
    return target.package(ctx, precision, quantized)


def write(report: dict, gates: list[GateResult], man: dict, out: Path) -> None:
    """report.json, report.md, report.html and manifest.json, into the staging directory."""
    from edgefocal.report_html import write_html

    reporting.write(report, gates, out)
    write_html(report, gates, out)
    manifest.write(man, out)


def raise_on_failed_gates(result: BuildResult) -> None:
    failed = [g for g in result.gates if not g.passed]
    if failed:
        raise GateFailed("; ".join(g.describe() for g in failed),
                         hint=f"see {result.output / 'report.md'}; relax the recipe's gates only with a reason")


def _onnx(exported: Exported):
    import onnx

    return onnx.load(str(exported.onnx))


def _torch_runners(model, pruned, threads: int):
    """The FP32 reference (on the GPU where CUDA exists), the pruned FP32 model, and with a GPU reference a
    CPU FP32 baseline, so CPU targets' speedups are not CPU-versus-GPU ratios (verify/compare.py)."""
    from edgefocal.backends.torch import TorchRunner, reference_device

    pruned_runner = TorchRunner(pruned.model, threads=threads) if pruned.stats else None
    cpu_baseline = TorchRunner(model, device="cpu", threads=threads) if reference_device() == "cuda" else None
    return TorchRunner(model, threads=threads), pruned_runner, cpu_baseline


def _reference_text(reference, cpu_baseline) -> str:
    if cpu_baseline is None:
        return reference.device
    return f"{reference.device}; CPU targets' speedups against the CPU baseline, {cpu_baseline.device}"
