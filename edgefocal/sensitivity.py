"""Sensitivity as a command of its own: the build's first stages (load, data, export, plan), then the
mixed-precision probes (precision/search.py) measuring every INT8 part, without packaging anything."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from edgefocal import models
from edgefocal.data import held_out, load_data
from edgefocal.export import export


def measure(recipe, log=print) -> dict:
    """{"model", "measured_on", "images", "agreement_int8", "sensitivity": [rows, costliest first], "seconds"}."""
    import onnx

    from edgefocal.backends.torch import TorchRunner
    from edgefocal.pipeline import context, prepare, set_threads
    from edgefocal.precision import plan_precision
    from edgefocal.precision.search import latency_costs, sensitivity, worst_agreement_and_kl
    from edgefocal.progress import Progress
    from edgefocal.verify.evaluate import predict

    started = time.time()
    targets = prepare(recipe)
    threads = set_threads(recipe.bench.threads)
    loaded = models.load(recipe.model)
    data = load_data(recipe, loaded.data_config, loaded.model.num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export(loaded.model, loaded.data_config["input_size"], data.eval.images[:16], Path(tmp))
        graph = onnx.load(str(exported.onnx))
        plan = plan_precision(graph, recipe.quantize.preset, recipe.quantize.float_modules)
        ctx = context(recipe, loaded, data, exported, None, Path(tmp), threads, Progress())
        probes = [p for t in targets if (p := t.probe(ctx, plan)) is not None]
        held = held_out(data, recipe.quantize.selection_size, recipe.calibration.seed + 1, loaded.data_config)
        ref = predict(TorchRunner(loaded.model, device="cpu", threads=threads), held.images)
        log(f"measuring {len([p for p in plan.parts if p.int8])} INT8 parts on {len(held)} held-out images")
        from edgefocal.prune.macs import count

        macs = count(loaded.model, tuple(loaded.data_config["input_size"])).per_module
        cost, share = latency_costs(probes, plan, held.images, macs, recipe.quantize.latency_cost == "measured")
        rows = sensitivity(probes, plan, held.images, ref, cost, share)
        base = worst_agreement_and_kl(probes, frozenset(), held.images, ref)[0]
    return {"model": loaded.name, "measured_on": [p.target for p in probes], "images": len(held),
            "agreement_int8": base, "sensitivity": rows, "seconds": round(time.time() - started, 1)}


def write_plot(rows: list[dict], path: Path) -> Path:
    """sensitivity.svg: the same chart report.html shows."""
    from edgefocal.report_html import sensitivity_chart

    path.write_text(sensitivity_chart(rows), encoding="utf-8")
    return path
