"""One fresh process serving one artifact, as a deployment would: what verify/serving.py runs N times per
row, so that runtimes never share one resident set and every load starts with cold caches.

    python -m edgefocal.verify.serving_child '{"target": "openvino", "path": ".../model_int8.xml", ...}'

The spec (JSON, one argument): target, path, precision, threads, batches (ascending, batch 1 first), images
(an .npy file of preprocessed eval images, read a batch at a time), iterations, consistency (bool), out (where
the result JSON goes); for target "torch", path is a torch.save'd FP32 model and device where it runs.

Measured, in this order: cold start (from before the runtime's package is imported to the runner loaded:
import, read and compile; edgefocal's own backend module is imported before the clock starts), the first
batch-1 inference, then peak resident memory (getrusage ru_maxrss) after serving at each batch size. Only
then, when asked, the consistency pass over the first `consistency_images` eval images (0: all; it reads
them, so it must not count in the memory figures)."""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from edgefocal.imagestore import ImageStore


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def filled(chunk: np.ndarray, images, batch: int) -> np.ndarray:
    """`chunk` topped up to exactly `batch` images (repeating the eval set's first images), contiguous float32."""
    parts, missing = [np.asarray(chunk)[:batch]], batch - len(chunk)
    while missing > 0:
        parts.append(np.asarray(images[:missing]))
        missing -= len(parts[-1])
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def make_runner(spec: dict, chosen=None):
    """The runner the build verifies this artifact with: the backend's (`chosen`, already imported), or for
    the FP32 reference a TorchRunner around the saved model."""
    if spec["target"] == "torch":
        import torch

        from edgefocal.backends.torch import TorchRunner

        model = torch.load(spec["path"], map_location="cpu", weights_only=False)
        return TorchRunner(model, device=spec.get("device") or "cpu", threads=spec.get("threads"))
    return (chosen or backend(spec)).runner(Path(spec["path"]), spec["precision"], spec.get("threads"))


def backend(spec: dict):
    """The target's backend; one registered from outside edgefocal is imported from its module first."""
    from edgefocal.backends import get_backend, register
    from edgefocal.errors import BadInput

    try:
        return get_backend(spec["target"])
    except BadInput:
        if not spec.get("backend"):
            raise
        import importlib

        module, name = spec["backend"].split(":")
        register(getattr(importlib.import_module(module), name))
        return get_backend(spec["target"])


def in_batches(runner, images: np.ndarray, batch: int) -> np.ndarray:
    """Logits of every image, served `batch` at a time (the last batch topped up, its extra rows dropped)."""
    out = []
    for i in range(0, len(images), batch):
        chunk = np.asarray(images[i:i + batch])
        out.append(np.asarray(runner.infer(filled(chunk, images, batch)), dtype=np.float32)[:len(chunk)])
    return np.concatenate(out)


def consistency(runner, images: np.ndarray, batch: int) -> dict:
    """Top-1 of every eval image at batch 1 against at `batch`, and whether two passes at `batch` give
    identical outputs."""
    one = in_batches(runner, images, 1)
    many, again = in_batches(runner, images, batch), in_batches(runner, images, batch)
    mismatches = int((one.argmax(1) != many.argmax(1)).sum())
    return {"consistent": mismatches == 0, "images": int(len(images)), "mismatches": mismatches,
            "max_logit_gap": float(np.abs(one - many).max()) if len(images) else 0.0,
            "repeatable": bool(np.array_equal(many, again)), "batch": int(batch)}


def serve(spec: dict) -> dict:
    images = ImageStore(Path(spec["images"]))  # read a batch at a time: a memory map's pages would count in RSS
    batches = sorted(set(spec["batches"]) | {1})
    x = {b: filled(np.asarray(images[:b]), images, b) for b in batches}
    chosen = None if spec["target"] == "torch" else backend(spec)  # edgefocal's module, not the runtime
    start = time.perf_counter()
    runner = make_runner(spec, chosen)
    runner.load()
    cold = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    runner.infer(x[1])
    first = (time.perf_counter() - start) * 1e3
    memory = {}
    for b in batches:
        for _ in range(spec.get("iterations", 5)):
            runner.infer(x[b])
        memory[b] = peak_rss_mb()
    out = {"cold_start_ms": cold, "first_inference_ms": first, "serving_memory_mb": memory, "device": runner.device}
    if spec.get("consistency"):
        limit = spec.get("consistency_images") or len(images)
        out["consistency"] = consistency(runner, images.rows(0, limit), batches[-1])
    runner.close()
    return out


def main(argv: list[str] | None = None) -> int:
    spec = json.loads((sys.argv[1:] if argv is None else argv)[0])
    try:
        result = serve(spec)
    except Exception as e:  # one line back to the build, which notes it on the row
        result = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
    Path(spec["out"]).write_text(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
