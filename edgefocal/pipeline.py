"""`edgefocal build`: recipe → model → prune → export → quantize per target → verify → gate → report.

Everything is measured in this one run: the FP32 reference's accuracy and latency are taken next to
every artifact's, so ratios are honest on a noisy machine."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefocal import data as datasets
from edgefocal.errors import BadInput, GateFailed, Interrupted
from edgefocal.gate import GateResult, check_gates
from edgefocal.outputs import StagedOutput, artifact_sha256, artifact_size
from edgefocal.recipe import Recipe
from edgefocal.targets import auto_target, get_target
from edgefocal.targets.base import Artifact, BuildContext, Runner


@dataclass
class BuildResult:
    output: Path
    report: dict
    gates: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


class _Progress:
    """rich progress bars when a console is attached, silence otherwise (tests, --quiet)."""

    def __init__(self, console):
        self.console = console
        self.bar = None

    @contextmanager
    def task(self, description: str, total: int):
        if self.console is None:
            yield lambda n=1: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console, transient=False) as bar:
            t = bar.add_task(description, total=total)
            yield lambda n=1: bar.advance(t, n)

    def log(self, message: str) -> None:
        if self.console is not None:
            self.console.print(f"[cyan]›[/cyan] {message}")


def resolve_targets(recipe: Recipe) -> list[str]:
    names = [auto_target() if t == "auto" else t for t in recipe.targets]
    for n in names:
        get_target(n)  # unknown names fail here, before any heavy work
    return list(dict.fromkeys(names))


def _load_data(spec, data_config: dict, what: str, progress: _Progress, size: int | None):
    ds = datasets.open_dataset(spec.source, spec.split, spec.path)
    if len(ds) == 0:
        raise BadInput(f"the {what} set ({ds.name}) is empty", hint=f"point {what} at labelled images")
    idx = datasets.balanced_subset(ds.labels, size, spec.seed) if size else np.arange(len(ds))
    with progress.task(f"preprocess {what} ({ds.name})", len(idx)) as advance:
        images = datasets.preprocess(ds, idx, data_config, advance)
    return ds, idx, images


def _validation_set(recipe: Recipe, reference: Runner, calib_ds, calib_idx, data_config, progress):
    """Held-out images (same source as calibration, disjoint from it) with FP32 logits, for NNCF's
    accuracy control."""
    from edgefocal.verify.evaluate import predict

    spare = np.setdiff1d(np.arange(len(calib_ds)), calib_idx)
    size = min(recipe.quantize.validation_size, len(spare))
    pick = spare[datasets.balanced_subset(calib_ds.labels[spare], size, recipe.calibration.seed + 1)]
    images = datasets.preprocess(calib_ds, pick, data_config)
    return images, predict(reference, images)


def build(recipe: Recipe, console=None) -> BuildResult:
    import torch

    from edgefocal.export import check_onnx_against_torch, onnx_from_torch
    from edgefocal.models import load_model
    from edgefocal.targets.torch_ref import TorchRunner
    from edgefocal.verify.bench import benchmark
    from edgefocal.verify.evaluate import predict
    from edgefocal.verify.metrics import compare

    import logging

    try:
        import nncf

        nncf.set_log_level(logging.WARNING)  # NNCF logs every skipped quantizer at INFO
    except ImportError:
        pass
    progress = _Progress(console)
    started = time.time()
    target_names = resolve_targets(recipe)
    targets = {n: get_target(n) for n in target_names}
    for name, target in targets.items():
        target.check_precision(recipe.precision)
        avail = target.availability()
        if not avail.can_build:
            raise BadInput(f"target {name} cannot be built on this machine: {avail.detail}", hint=avail.fix)
    threads = recipe.bench.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    staged = StagedOutput(recipe.output)  # fails now, not after minutes of work, if unwritable
    try:
        with staged:
            loaded = load_model(recipe.model.name, recipe.model.checkpoint, recipe.model.num_classes,
                                recipe.model.trust_checkpoint)
            progress.log(f"model {loaded.name} ({sum(p.numel() for p in loaded.model.parameters()) / 1e6:.2f}M params), "
                         f"input {tuple(loaded.data_config['input_size'])}")
            calib_ds, calib_idx, calibration = _load_data(recipe.calibration, loaded.data_config, "calibration",
                                                          progress, recipe.calibration.size)
            eval_ds, eval_idx, eval_images = _load_data(recipe.eval, loaded.data_config, "eval", progress,
                                                        recipe.eval.size)
            eval_labels = eval_ds.labels[eval_idx]
            n_classes = loaded.model.num_classes
            if eval_labels.max() >= n_classes:
                raise BadInput(f"eval labels go up to {eval_labels.max()} but the model has {n_classes} classes",
                               hint="pass --num-classes / a checkpoint trained on this dataset")

            reference = TorchRunner(loaded.model, threads=threads)
            reference.load()
            model = loaded.model
            prune_stats = None
            if recipe.prune.method != "none":
                from edgefocal.prune import prune_model

                progress.log(f"pruning ({recipe.prune.method}, ratio {recipe.prune.ratio})")
                result = prune_model(loaded.model, calibration, recipe.prune, log=progress.log)
                model, prune_stats = result.model, result.stats

            onnx_path = staged.path / "model_fp32.onnx"
            progress.log("exporting ONNX (opset 18, dynamic batch)")
            onnx_from_torch(model, tuple(loaded.data_config["input_size"]), onnx_path)
            onnx_diff = check_onnx_against_torch(model, onnx_path, eval_images[:16])

            facts: dict = {}
            if prune_stats:
                facts["sparsity_2of4"] = bool(prune_stats.get("sparsity_2of4"))
            if recipe.precision == "int8" and recipe.quantize.max_agreement_drop is not None:
                facts["validation"] = _validation_set(recipe, TorchRunner(model, threads=threads), calib_ds,
                                                      calib_idx, loaded.data_config, progress)
            ctx = BuildContext(recipe=recipe, model=model, data_config=loaded.data_config,
                               class_names=loaded.class_names, calibration=calibration, onnx_fp32=onnx_path,
                               workdir=staged.path, num_threads=threads, log=progress.log, facts=facts)
            artifacts: list[Artifact] = []
            for name, target in targets.items():
                progress.log(f"building {name} {recipe.precision}")
                artifacts += target.build(ctx, recipe.precision)

            # --- verification: every runner on the same eval set, then latency side by side ---
            runners: dict[str, Runner] = {"torch fp32 (reference)": reference}
            rows: list[dict] = [{"label": "torch fp32 (reference)", "target": "torch", "precision": "fp32",
                                 "requested": False, "device": reference.device}]
            if prune_stats:
                runners["torch fp32 (pruned)"] = TorchRunner(model, threads=threads)
                rows.append({"label": "torch fp32 (pruned)", "target": "torch", "precision": "fp32",
                             "requested": False, "device": "torch eager FP32 (pruned model)"})
            for art in artifacts:
                row = {"label": art.label, "target": art.target, "precision": art.precision,
                       "path": str(art.path.relative_to(staged.path)),
                       "size_bytes": artifact_size(art.path) if art.path.exists() else None,
                       "requested": art.requested, "skipped": art.skipped, **art.info}
                rows.append(row)
                if art.make_runner is not None and not art.skipped:
                    runners[art.label] = art.make_runner()
            by_label = {r["label"]: r for r in rows}
            for label, runner in runners.items():
                if label != "torch fp32 (reference)":
                    runner.load()
                    by_label[label]["device"] = runner.device
            logits = {}
            with progress.task("evaluate", len(eval_images) * len(runners)) as advance:
                for label, runner in runners.items():
                    logits[label] = predict(runner, eval_images, advance=advance)
            ref_logits = logits["torch fp32 (reference)"]
            for label, lg in logits.items():
                by_label[label].update(compare(lg, ref_logits, eval_labels))

            timed = {k: r for k, r in runners.items() if not by_label[k].get("no_latency")}
            b = recipe.bench
            with progress.task("benchmark", len(b.batch_sizes) * b.rounds * len(timed)) as advance:
                lat = benchmark(timed, eval_images[:max(b.batch_sizes)], b.batch_sizes, b.warmup, b.iterations,
                                b.rounds, advance)
            ref_lat = lat["torch fp32 (reference)"]
            for label, per_batch in lat.items():
                row = by_label[label]
                row["latency_ms"] = {bs: {k: s[k] for k in ("p50", "p90", "p99", "mean")} for bs, s in per_batch.items()}
                row["throughput"] = {bs: s["throughput"] for bs, s in per_batch.items()}
                row["speedup_vs_reference"] = {bs: ref_lat[bs]["p50"] / s["p50"] for bs, s in per_batch.items()}
            for runner in runners.values():
                runner.close()

            gates = check_gates(recipe.gates, [r for r in rows if r.get("requested")])
            report = {
                "model": {"name": loaded.name, "checkpoint": str(loaded.checkpoint) if loaded.checkpoint else None,
                          "checkpoint_sha256": loaded.checkpoint_sha256, "num_classes": n_classes,
                          "input_size": list(loaded.data_config["input_size"])},
                "reference": {"device": reference.device, "gpu": torch.cuda.is_available()},
                "eval": {"name": eval_ds.name, "count": int(len(eval_images))},
                "calibration": {"name": calib_ds.name, "count": int(len(calib_idx)),
                                "fingerprint": datasets.fingerprint(calib_ds, calib_idx)},
                "export": {"onnx_opset": 18, "onnx_max_abs_diff_vs_torch": onnx_diff},
                "prune": prune_stats,
                "bench": b.model_dump(),
                "rows": rows,
                "seconds": round(time.time() - started, 1),
            }
            from edgefocal import manifest, report as reporting

            reporting.write(report, gates, staged.path)
            arts = [{"path": r["path"], "target": r["target"], "precision": r["precision"],
                     "sha256": artifact_sha256(staged.path / r["path"])}
                    for r in rows if "path" in r and (staged.path / r["path"]).exists()]
            arts.append({"path": "model_fp32.onnx", "target": "onnx", "precision": "fp32",
                         "sha256": artifact_sha256(onnx_path)})
            man = manifest.manifest(
                model={"name": loaded.name, "arch": loaded.arch, "checkpoint": report["model"]["checkpoint"],
                       "checkpoint_sha256": loaded.checkpoint_sha256, "data_config": loaded.data_config},
                recipe=recipe.model_dump(mode="json"), calibration=report["calibration"], artifacts=arts)
            import json

            (staged.path / "manifest.json").write_text(json.dumps(reporting._jsonable(man), indent=2) + "\n")
            final = staged.commit()
    except KeyboardInterrupt:
        raise Interrupted("the build was interrupted; nothing was written to " + str(recipe.output),
                          hint="run the build again") from None
    result = BuildResult(final, report, gates)
    if console is not None:
        reporting.render(report, gates, console)
        console.print(f"[bold]wrote[/bold] {final} in {report['seconds']:.0f} s")
    return result


def raise_on_failed_gates(result: BuildResult) -> None:
    failed = [g for g in result.gates if not g.passed]
    if failed:
        raise GateFailed("; ".join(g.describe() for g in failed),
                         hint=f"see {result.output / 'report.md'}; relax the recipe's gates only with a reason")
