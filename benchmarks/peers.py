"""edgefocal's INT8 against what a user gets without it, in one run per model: plain NNCF (default and
ModelType.TRANSFORMER) on OpenVINO, ONNX Runtime's own quantize_static, NVIDIA ModelOpt's ONNX PTQ (where it
installs; calibrated on the CPU, run in ONNX Runtime), and edgefocal's OpenVINO, ONNX Runtime and TensorRT
Q/DQ artifacts (and Core ML's W8A8 package on the trained models, agreement only) from `edgefocal build` with
the default recipe. The peers quantize the same FP32 export, a pruned one in the pruned cases. Every artifact is evaluated on the same
images and timed interleaved with torch FP32 eager at batch 1 in the same process, then for throughput at
batches 8 and 32.

    python benchmarks/peers.py                  # writes benchmarks/peers.md (the whole file, one run)
    python benchmarks/peers.py --quick --out /tmp/peers.md

Models: the embedded default (also with 30 % of its MACs pruned, against the unpruned reference) and a
FocalNet this project never tuned on (examples/focalnet-rgb: 3 channels, other width, depths and focal
levels), on the full Fashion-MNIST test split; focalnet_tiny_srf at 224² with random weights for latency
only (its agreement figures mean nothing, so its builds run the preset plan without the mixed-precision
search, which would only chase noise), also pruned 30 % of MACs."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import header, write

from edgefocal.recipe import REPO_ROOT, load_recipe

OUT = Path(__file__).with_suffix(".md")
CALIBRATION = 300
# 16 calibration images at 224²: ORT's quantize_static keeps every activation of every calibration image
# (about 0.4 GB each here; its CalibMaxIntermediateOutputs drops data instead of folding it in ORT 1.32)
SRF = {"model.name": "focalnet_tiny_srf", "model.num_classes": 10, "calibration.size": 16, "eval.size": 200,
       "quantize.target_agreement": None}
# batch-1 latency: 200 runs a runner in 20 rounds of 10. This shared machine switches between a fast and a slow
# state within seconds (the same IR in one process: 15.7 or 20.5 ms a run), and not every runtime slows alike;
# in 5 rounds of 40 a runner's p50 fell in whichever state held most of its runs (single rounds 0.51–1.61× on the
# 32×32 models), shorter rounds spread the two states more evenly over the runners
ROUNDS, ITERATIONS = 20, 200
THROUGHPUT_BATCHES = (8, 32)
THROUGHPUT_GMACS = 1500  # per runner and batch size: at 224² (4.4 GMACs an image), 10 batches of 32
CASES = {
    "edgefocal-fmnist (embedded default)": {"recipe": None, "overrides": {}},
    "edgefocal-fmnist, 30 % of MACs pruned (against the unpruned FP32 reference)": {
        "recipe": None, "overrides": {"prune.method": "channels", "prune.ratio": 0.3}},
    "focalnet-rgb (never tuned on)": {"recipe": REPO_ROOT / "recipes" / "focalnet-rgb.yaml", "overrides": {}},
    "focalnet_tiny_srf (224², random weights: latency only)": {
        "recipe": None, "latency_only": True, "overrides": {**SRF}},
    "focalnet_tiny_srf, 30 % of MACs pruned (latency only; the reference is the unpruned torch model)": {
        "recipe": None, "latency_only": True,
        "overrides": {**SRF, "prune.method": "channels", "prune.ratio": 0.3}},
}


def peer_artifacts(onnx_path: Path, calibration: np.ndarray, workdir: Path, log) -> dict[str, tuple[str, Path]]:
    """{label: (runtime, path)} of what the peers produce from the same FP32 ONNX and calibration images."""
    import nncf
    import openvino as ov

    out: dict[str, tuple[str, Path]] = {}
    data = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
    for label, kwargs in (("plain NNCF default (OpenVINO)", {}),
                          ("plain NNCF TRANSFORMER (OpenVINO)", {"model_type": nncf.ModelType.TRANSFORMER})):
        q = nncf.quantize(ov.convert_model(str(onnx_path)), data, subset_size=len(calibration), **kwargs)
        ov.save_model(q, str(workdir / f"{label.split(' (')[0].replace(' ', '_')}.xml"), compress_to_fp16=False)
        out[label] = ("openvino", workdir / f"{label.split(' (')[0].replace(' ', '_')}.xml")
    out["ONNX Runtime quantize_static (defaults)"] = ("onnxruntime", _ort_static(onnx_path, calibration, workdir))
    modelopt = _modelopt(onnx_path, calibration, workdir, log)
    if modelopt is not None:
        out["ModelOpt ONNX PTQ, max (ONNX Runtime)"] = ("onnxruntime", modelopt)
    return out


def _ort_static(onnx_path: Path, calibration: np.ndarray, workdir: Path) -> Path:
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"input": calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    out = workdir / "ort_static.onnx"
    q.quantize_static(str(onnx_path), str(out), Reader())
    return out


def _modelopt(onnx_path: Path, calibration: np.ndarray, workdir: Path, log) -> Path | None:
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as e:
        log(f"ModelOpt not importable here ({e}); its row is left out")
        return None
    from edgefocal.backends.tensorrt.modelopt_qdq import calibration_steps, onnxruntime_unpatched

    out = workdir / "modelopt.onnx"
    with onnxruntime_unpatched():  # ModelOpt patches ONNX Runtime's quantizer, which the next case's build uses
        quantize(onnx_path=str(onnx_path), calibration_data=calibration, calibration_method="max",
                 calibration_shapes=calibration_steps(onnx_path, calibration),
                 calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=str(out))
    return out


def runner_for(runtime: str, path: Path, threads: int):
    """OpenVINO for IRs, Core ML's runner for packages (the numpy executor off macOS), ONNX Runtime for the
    rest (a TensorRT Q/DQ ONNX too: no TensorRT here)."""
    from edgefocal.backends import get_backend
    from edgefocal.backends.onnxruntime import OnnxRuntimeRunner
    from edgefocal.backends.openvino import OpenVINORunner

    if runtime == "coreml":
        return get_backend("coreml").runner(path, "int8", threads)
    return OpenVINORunner(path, threads) if runtime == "openvino" else OnnxRuntimeRunner(path, threads)


def run_case(title: str, case: dict, quick: bool, log) -> list[str]:
    """One model: edgefocal's build, the peers from the same export, every runner evaluated and timed."""
    from edgefocal.backends.torch import TorchRunner
    from edgefocal.verify.bench import benchmark
    from edgefocal.verify.evaluate import predict
    from edgefocal.metrics import compare

    started = time.time()
    # Core ML on the trained models (its numpy executor gives agreement, not latency; at 224² it is too slow)
    targets = ["openvino", "onnxruntime", "tensorrt"] + ([] if case.get("latency_only") else ["coreml"])
    with tempfile.TemporaryDirectory() as tmp:
        result, recipe, built = build_case(case, targets, Path(tmp) / "edgefocal", quick)
        artifacts = {f"edgefocal {label}": found for label, found in built.items()}
        images, labels, calibration, model = _inputs(recipe)
        artifacts |= peer_artifacts(result.output / "model_fp32.onnx", calibration, Path(tmp), log)
        threads = result.report["bench"]["threads_used"]
        runners = {"torch FP32 eager": TorchRunner(model, device="cpu", threads=threads)}
        runners |= {label: runner_for(rt, p, threads) for label, (rt, p) in artifacts.items()}
        for r in runners.values():
            r.load()
        # 8 images a batch at 224²: at 100, the case with eight runtimes loaded was killed for memory (exit -9)
        batch = 100 if images[0].size <= 3 * 64 * 64 else 8
        ref = predict(runners["torch FP32 eager"], images, batch)
        rows = {label: compare(predict(r, images, batch), ref, labels) for label, r in runners.items()}
        timed = {label: r for label, r in runners.items() if artifacts.get(label, ("torch",))[0] != "coreml"}
        lat = benchmark(timed, images[:1], [1], 10, 60 if quick else ITERATIONS, 5 if quick else ROUNDS)
        gmacs = result.report["bench"]["gmacs_per_image"]
        # throughput: each runner's batch-8 and batch-32 runs bounded by MACs (bench.bounded_counts), interleaved
        lat_batched = benchmark(timed, images[:1], list(THROUGHPUT_BATCHES), 2, 20 if quick else 50, 5,
                                gmacs_per_image=gmacs, max_gmacs=THROUGHPUT_GMACS)
    for label in lat:
        lat[label] |= lat_batched[label]
    return _table(title, result, rows, lat, case.get("latency_only", False), time.time() - started)


def build_case(case: dict, targets: list[str], output: Path, quick: bool = False):
    """(build result, recipe, {row label: (target, INT8 artifact)}) of edgefocal's build of one case, timed
    only briefly (the scripts time it side by side afterwards)."""
    from edgefocal.pipeline import build

    overrides = {"targets": targets, "calibration.size": CALIBRATION,
                 "bench.batch_sizes": [1], "bench.rounds": 1, "bench.iterations": 3, **case["overrides"]}
    if quick:
        overrides.update({"eval.size": 500, "quantize.selection_size": 300, "quantize.validation_size": 300})
    recipe = load_recipe(case["recipe"] or REPO_ROOT / "recipes" / "default.yaml", {**overrides, "output": str(output)})
    result = build(recipe)
    rows = [row.to_dict() for row in result.report["rows"]]
    return result, recipe, {r["label"]: (r["target"], result.output / r["path"]) for r in rows
                            if r.get("requested") and not r.get("skipped") and r["precision"] == "int8"}


def _inputs(recipe):
    from edgefocal import models
    from edgefocal.data import load_data

    loaded = models.load(recipe.model)
    data = load_data(recipe, loaded.data_config, loaded.model.num_classes)
    return data.eval.images, data.eval.labels, data.calibration.images, loaded.model


def _search_line(search: dict) -> str:
    if not search:
        return "edgefocal's mixed-precision search off (the preset plan)"
    return (f"edgefocal's mixed precision kept {len(search['chosen'])} parts float (target "
            f"{search['target_agreement']:.4f} on {search['selection']['images']} selection images, validation "
            f"agreement {search['validation_agreement']:.4f}, search {search['seconds']:.0f} s)")


def _table(title: str, result, rows: dict, lat: dict, latency_only: bool, seconds: float) -> list[str]:
    ref_ms = lat["torch FP32 eager"][1]["p50"]
    search = (result.report.get("precision_plan") or {}).get("mixed_precision") or {}
    lines = [f"## {title}", "",
             f"{result.report['eval']['count']} eval images ({result.report['eval']['name']}), "
             f"{result.report['calibration']['count']} calibration images; {_search_line(search)}; case took "
             f"{seconds:.0f} s.", ""]
    batches = [f"b{b} img/s" for b in THROUGHPUT_BATCHES]
    lines += ["| artifact | agreement | top-1 drop (pt) | b1 p50 ms | speedup vs torch FP32 | per round | "
              + " | ".join(batches) + " |", "|---|---|---|---|---|---|" + "---|" * len(batches)]
    for label, c in rows.items():
        agree = "–" if latency_only else f"{c['agreement']:.2%}"
        drop = "–" if latency_only else f"{c['top1_drop']:+.2f}"
        if label not in lat:  # Core ML off macOS: agreement only
            lines.append(f"| {label} | {agree} | {drop} | – | – (macOS only) | – |" + " – |" * len(batches))
            continue
        p50 = lat[label][1]["p50"]
        low, high = _round_speedups(lat["torch FP32 eager"][1], lat[label][1])
        lines.append(f"| {label} | {agree} | {drop} | {p50:.2f} | {ref_ms / p50:.2f}× | {low:.2f}–{high:.2f}× | "
                     + " | ".join(f"{lat[label][b]['throughput']:,.0f}" for b in THROUGHPUT_BATCHES) + " |")
    return lines + ["", THROUGHPUT_NOTE, ""] + _against_nncf(lat)


THROUGHPUT_NOTE = (f"Throughput (images/s) at batch {' and '.join(map(str, THROUGHPUT_BATCHES))}: the batch's p50 over "
                   "interleaved rounds after the batch-1 runs, each runner's runs bounded to "
                   f"{THROUGHPUT_GMACS} GMACs per batch size, 2 threads; higher is better.")


def _against_nncf(lat: dict) -> list[str]:
    """edgefocal's OpenVINO INT8 against plain NNCF default's, round by round (issue 20's speed bound)."""
    ours = next((k for k in lat if k.startswith("edgefocal openvino int8")), None)
    nncf = "plain NNCF default (OpenVINO)"
    if ours is None or nncf not in lat:
        return []
    rounds = [a / b for a, b in zip(lat[ours][1]["round_medians_ms"], lat[nncf][1]["round_medians_ms"])]
    ratio = lat[ours][1]["p50"] / lat[nncf][1]["p50"]
    return [f"edgefocal's OpenVINO INT8 takes {ratio:.2f}× plain NNCF default's batch-1 p50 (single rounds "
            f"{min(rounds):.2f}–{max(rounds):.2f}×): " + ("no slower." if ratio <= 1 else "slower."), ""]


def _round_speedups(reference: dict, artifact: dict) -> tuple[float, float]:
    """The lowest and highest speedup of single rounds (torch's round median over the artifact's)."""
    ratios = [r / a for r, a in zip(reference["round_medians_ms"], artifact["round_medians_ms"])]
    return min(ratios), max(ratios)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="run only cases whose title contains this")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print its lines as JSON
    args = ap.parse_args(argv)
    if args.case:
        print(CASE_MARK + json.dumps(run_case(args.case, CASES[args.case], args.quick, log=print)))
        return 0
    lines = header("INT8 against the peers") + [
        "Agreement: fraction of eval images whose top-1 class equals torch FP32's; top-1 drop in points. "
        "Latency: batch 1, p50 over interleaved rounds, all artifacts and the torch reference in the same "
        "process and run, the artifacts' order rotated every round (a slot's time depends on what ran before it); "
        f"\"per round\" is the lowest and highest speedup of the {5 if args.quick else ROUNDS} rounds taken one at a time, "
        "how far this shared machine moved it during the run. TensorRT's Q/DQ ONNX runs in ONNX Runtime here "
        "(no TensorRT): its latency is not an engine's.", ""]
    for title in CASES:
        if not args.only or args.only in title:
            lines += _case_in_subprocess(title, args.quick)
    write(args.out, lines)
    return 0


CASE_MARK = "peers-case-lines: "


def _case_in_subprocess(title: str, quick: bool) -> list[str]:
    """One case in a fresh process: each case loads several runtimes and quantizers, and their memory is
    only given back when the process ends."""
    cmd = [sys.executable, __file__, "--case", title] + (["--quick"] if quick else [])
    print(f"case: {title}", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    marked = [line for line in done.stdout.splitlines() if line.startswith(CASE_MARK)]
    if done.returncode != 0 or not marked:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return [f"## {title}", "", f"**failed** (exit {done.returncode}): {tail}", ""]
    return json.loads(marked[0][len(CASE_MARK):])


if __name__ == "__main__":
    sys.exit(main())
