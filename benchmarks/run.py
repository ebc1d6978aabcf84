"""Latency and speedup vs torch FP32 eager, measured side by side in one run, for both CPU targets on
focalnet_tiny_srf (224², random weights: latency only) and the embedded default (accuracy too).

    python benchmarks/run.py [--write benchmarks/README.md]   # --write: the whole file, from this run

Each model is one `edgefocal build` (recipes/default.yaml, the default command's recipe) through OpenVINO
and ONNX Runtime; within a build every runner (torch reference included) is timed interleaved, round by
round, so the ratios survive a noisy machine."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import header, write

from edgefocal.pipeline import build
from edgefocal.recipe import REPO_ROOT, load_recipe

CASES = {
    "focalnet_tiny_srf (224², random weights)": {
        "model.name": "focalnet_tiny_srf", "model.num_classes": 10,
        "calibration.size": 64, "eval.size": 100, "quantize.target_agreement": None,  # random weights: no search
        "bench.iterations": 40, "bench.rounds": 5, "bench.warmup": 5,
    },
    "edgefocal-fmnist (embedded default, 32², trained)": {
        "bench.iterations": 200, "bench.rounds": 5, "bench.warmup": 20,
    },
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--write", type=Path, help="write the results as markdown to this file")
    p.add_argument("--only", help="run only cases whose name contains this")
    args = p.parse_args()
    sections = []
    for title, overrides in CASES.items():
        if args.only and args.only not in title:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            recipe = load_recipe(REPO_ROOT / "recipes" / "default.yaml", {"targets": ["openvino", "onnxruntime"], "precision": "int8",
                                        "output": str(Path(tmp) / "out"), **overrides})
            result = build(recipe, console=None)
        rows = [row.to_dict() for row in result.report["rows"]]
        lines = [f"### {title}", "",
                 f"reference: {result.report['reference']['device']}; eval: {result.report['eval']['count']} "
                 f"{result.report['eval']['name']} images; build took {result.report['seconds']:.0f} s", "",
                 "| artifact | top-1 | agreement | b1 p50 ms | b1 p99 ms | b1 speedup | b8 p50 ms | b8 img/s | b8 speedup |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lat, sp, tp = r["latency_ms"], r["speedup_vs_reference"], r["throughput"]
            lines.append(f"| {r['label']} | {r['top1']:.2%} | {r['agreement']:.2%} | {lat[1]['p50']:.2f} | "
                         f"{lat[1]['p99']:.2f} | {sp[1]:.2f}× | {lat[8]['p50']:.2f} | {tp[8]:.1f} | {sp[8]:.2f}× |")
        sections.append("\n".join(lines) + "\n")
        print(sections[-1] + "\n", flush=True)
    if args.write:
        intro = ["Latency is per batch (ms), after warm-up, pooled over interleaved rounds; speedup is torch FP32 "
                 "eager p50 / artifact p50 from the same run. The machine is shared, so absolute figures move "
                 "between runs; the ratios are the figures to compare.", ""]
        outro = ["focalnet_tiny_srf has random weights here (no pretrained weights can be had in this workplace), so "
                 "its top-1 and agreement are not accuracy figures; only its latency is. Pruning figures are in "
                 "[pruning.md](pruning.md), from `python benchmarks/pruning.py`; build time and memory against the "
                 "eval set's size in [scale.md](scale.md), from `python benchmarks/scale.py`."]
        write(args.write, header("Benchmarks") + intro + sections + outro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
