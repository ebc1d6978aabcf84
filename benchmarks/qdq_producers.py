"""TensorRT Q/DQ producers side by side on the embedded default: edgefocal's (NNCF plus fusion pairs,
quantize/backends/tensorrt/qdq.py) and NVIDIA ModelOpt's ONNX PTQ (quantize/modelopt_qdq.py) under the same precision
plan and calibration set, and ModelOpt with its own placement for comparison. Agreement with FP32 and
top-1 through ONNX Runtime on the full Fashion-MNIST test split; Q/DQ counts, quantized parts per FocalNet
role, TensorRT conformance and seconds to quantize.

    python benchmarks/qdq_producers.py [--write benchmarks/qdq_producers.md]   # needs edgefocal[modelopt]"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
import tempfile
import time
from pathlib import Path

from common import header, write

CALIBRATION = 300


def _data(data_config):
    from edgefocal.data import balanced_subset, fashion_mnist, preprocess

    train, test = fashion_mnist("train"), fashion_mnist("test")
    calibration = preprocess(train, balanced_subset(train.labels, CALIBRATION, seed=0), data_config)
    images = preprocess(test, list(range(len(test.labels))), data_config)
    return calibration, images, test.labels


def _producers(fp32: Path, plan, calibration):
    """(name, Q/DQ model, seconds) of each producer."""
    from edgefocal.precision import modelopt_qdq, tensorrt_qdq

    quiet = lambda s: None  # noqa: E731
    out = []
    for name, run in (
        ("edgefocal (NNCF + fusion pairs), plan 'focalnet'",
         lambda: tensorrt_qdq.quantize(fp32, plan, calibration, log=quiet)[0]),
        ("ModelOpt max, plan 'focalnet'", lambda: modelopt_qdq.quantize(fp32, plan, calibration, log=quiet)[0]),
        ("ModelOpt max, its own placement", lambda: modelopt_qdq._run_modelopt(fp32, calibration, [], "fp32", "max")),
    ):
        started = time.time()
        model = run()
        out.append((name, model, time.time() - started))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", type=Path, help="write the results as markdown to this file")
    args = p.parse_args()
    import numpy as np
    import onnx

    from edgefocal.export import onnx_from_torch
    from edgefocal.models import load_model
    from edgefocal.backends.tensorrt.conformance import check_tensorrt_qdq
    from edgefocal.backends.tensorrt.modelopt_qdq import modelopt_version, qdq_counts
    from edgefocal.precision.policy import plan_precision
    from edgefocal.backends.onnxruntime import OnnxRuntimeRunner
    from edgefocal.verify.evaluate import predict

    loaded = load_model()
    calibration, images, labels = _data(loaded.data_config)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = onnx_from_torch(loaded.model, tuple(loaded.data_config["input_size"]), Path(tmp) / "fp32.onnx")
        plan = plan_precision(onnx.load(str(fp32)), "focalnet")
        with OnnxRuntimeRunner(fp32) as r:
            want = predict(r, images).argmax(1)
        for name, model, seconds in _producers(fp32, plan, calibration):
            path = Path(tmp) / "q.onnx"
            onnx.save(model, str(path))
            with OnnxRuntimeRunner(path) as r:
                got = predict(r, images).argmax(1)
            found = check_tensorrt_qdq(model)
            counts = qdq_counts(model, plan)
            rules = Counter(v.rule for v in found if v.severity == "error")
            outside = sorted(set(counts["quantized_parts"]) - set(plan.role_counts(True)))
            rows.append(f"| {name} | {(got == want).mean():.2%} | {(got == labels).mean():.2%} | "
                        f"{counts['qdq_nodes']} | {', '.join(f'{k} {v}' for k, v in counts['quantized_parts'].items())} | "
                        f"{', '.join(outside) or 'none'} | {sum(rules.values())} / "
                        f"{sum(v.severity != 'error' for v in found)}"
                        f"{''.join(f' ({k} ×{n})' for k, n in rules.items())} | {seconds:.0f} |")
    fp32_top1 = (want == labels).mean()
    lines = header("TensorRT Q/DQ producers: edgefocal and ModelOpt") + [
        f"Embedded default (Fashion-MNIST, 32²), FP32 top-1 {fp32_top1:.2%} on the full test split ({len(labels)} "
        f"images, ONNX Runtime); calibration {CALIBRATION} class-balanced train images; ModelOpt {modelopt_version()} "
        "calibrating on the CPU. Agreement = same top-1 as FP32. Quantized parts: FocalNet parts (module, role) "
        "whose inputs come from a DequantizeLinear. Conformance: TensorRT Q/DQ errors / warnings.", "",
        "| producer | agreement | top-1 | Q/DQ nodes | quantized parts per role | roles the plan keeps float "
        "| conformance | s |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        "Under the plan, both producers quantize only the plan's INT8 roles (ModelOpt is handed every other node "
        "as `nodes_to_exclude`, and the build checks its placement against the plan). `weighted-output`: a "
        "QuantizeLinear right after a conv's output, which edgefocal's checker refuses (TensorRT keeps weighted-op "
        "outputs in higher precision by default)."]
    print("\n".join(lines))
    if args.write:
        write(args.write, lines)
    return 0 if np.isfinite(fp32_top1) else 1


if __name__ == "__main__":
    sys.exit(main())
