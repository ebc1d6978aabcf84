"""Which baseline each row's speedup is taken against. With a GPU reference, CPU runners are timed and
compared with the CPU FP32 baseline, GPU runners with the GPU reference; without one nothing changes.

CUDA cannot run here, so the GPU side is faked by runners that say `on_gpu` (named FakeGpu*); real GPU
runs are in tests/backends/test_torch.py's `gpu` tests and benchmarks/gpu_reference.py."""
from __future__ import annotations

import numpy as np
import pytest

from edgefocal.recipe import BenchSpec
from edgefocal.core import Row, Runner
from edgefocal.backends.torch import TorchRunner  # the real one, bound before a test patches the module's
from edgefocal.verify.compare import CPU_BASELINE, REFERENCE, Subject, latency_groups, torch_subjects, verify


class FixedRunner(Runner):
    """Constant logits and a constant latency, so every speedup has a known answer."""

    def __init__(self, ms: float, on_gpu: bool = False):
        super().__init__(None)
        self.ms, self.on_gpu = ms, on_gpu
        self.device = ("FAKE GPU " if on_gpu else "cpu ") + f"{ms} ms"

    def load(self) -> None:
        pass

    def infer(self, x: np.ndarray) -> np.ndarray:
        return np.tile(np.arange(10, dtype=np.float32), (len(x), 1))

    def timed_infer(self, x: np.ndarray, repeats: int) -> list[float]:
        return [self.ms] * repeats


def FakeGpuRunner(ms: float) -> FixedRunner:  # noqa: N802  a fake: CUDA cannot run here
    return FixedRunner(ms, on_gpu=True)


BENCH = BenchSpec(batch_sizes=[1], warmup=0, iterations=3, rounds=1)
IMAGES, LABELS = np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, np.int64)


def _artifact(label: str, runner: Runner) -> Subject:
    return Subject(Row(label, label.split()[0], "int8", requested=True), runner)


def test_gpu_reference_with_cpu_baseline_splits_the_speedups():
    subjects = torch_subjects(FakeGpuRunner(2.0), None, FixedRunner(40.0)) + [
        _artifact("openvino int8", FixedRunner(10.0)), _artifact("tensorrt int8 (engine)", FakeGpuRunner(0.5))]
    rows = {r.label: r for r in verify(subjects, IMAGES, LABELS, BENCH)}
    # CPU vs CPU: 40 / 10, not the CPU-versus-GPU 2 / 10
    assert rows["openvino int8"].speedup_vs_reference[1] == pytest.approx(4.0)
    assert rows["openvino int8"].speedup_against == CPU_BASELINE
    assert rows["tensorrt int8 (engine)"].speedup_vs_reference[1] == pytest.approx(4.0)
    assert rows["tensorrt int8 (engine)"].speedup_against == REFERENCE
    assert rows[CPU_BASELINE].speedup_vs_reference[1] == pytest.approx(1.0)
    assert rows[CPU_BASELINE].agreement == 1.0 and rows[CPU_BASELINE].notes  # accuracy stays vs the reference
    assert rows[REFERENCE].device.startswith("FAKE GPU")


def test_cpu_reference_keeps_one_group_and_no_extra_fields():
    subjects = torch_subjects(FixedRunner(40.0), None) + [_artifact("openvino int8", FixedRunner(10.0))]
    assert list(latency_groups(subjects)) == [REFERENCE]
    rows = {r.label: r for r in verify(subjects, IMAGES, LABELS, BENCH)}
    assert rows["openvino int8"].speedup_vs_reference[1] == pytest.approx(4.0)
    assert "speedup_against" not in rows["openvino int8"].to_dict() and CPU_BASELINE not in rows


def test_groups_put_each_runner_with_its_device():
    subjects = torch_subjects(FakeGpuRunner(1.0), FakeGpuRunner(1.0), FixedRunner(1.0)) + [
        _artifact("onnxruntime int8", FixedRunner(1.0))]
    groups = {base: [s.row.label for s in group] for base, group in latency_groups(subjects).items()}
    assert groups == {REFERENCE: [REFERENCE, "torch fp32 (pruned)"], CPU_BASELINE: [CPU_BASELINE, "onnxruntime int8"]}


class FakeGpuTorchRunner(TorchRunner):
    """A fake for the pipeline test: CUDA cannot run here, so the 'GPU' torch reference runs on the CPU but
    reports itself as on the GPU, the way the real TorchRunner does where CUDA exists."""

    def __init__(self, model, device=None, threads=None):
        super().__init__(model, device="cpu", threads=threads)
        if device != "cpu":  # the device TorchRunner picks itself: CUDA, as reference_device() says (faked)
            self.on_gpu, self.device = True, "FAKE GPU torch reference (runs on the CPU here)"

    def timed_infer(self, x, repeats):
        return Runner.timed_infer(self, x, repeats)  # wall clock: no CUDA events here


def test_build_with_a_gpu_reference_adds_the_cpu_baseline(tmp_path, monkeypatch):
    """The pipeline's wiring: reference_device() says cuda (faked), so the build runs the CPU baseline and
    the CPU targets' speedups are against it; the report says so."""
    from edgefocal.pipeline import build
    from edgefocal.recipe import load_recipe
    import edgefocal.backends.torch as torch_ref

    monkeypatch.setattr(torch_ref, "reference_device", lambda: "cuda")
    monkeypatch.setattr(torch_ref, "TorchRunner", FakeGpuTorchRunner)
    recipe = load_recipe(None, {"targets": ["onnxruntime"], "precision": "fp32", "eval.size": 100,
                                "bench.batch_sizes": [1], "bench.iterations": 3, "bench.rounds": 1,
                                "bench.warmup": 1, "output": str(tmp_path / "out")})
    report = build(recipe).report
    rows = {r.label: r for r in report["rows"]}
    assert list(rows)[:2] == [REFERENCE, CPU_BASELINE] and rows[REFERENCE].device.startswith("FAKE GPU")
    ort = rows["onnxruntime fp32"]
    assert ort.speedup_against == CPU_BASELINE
    base_p50, ort_p50 = rows[CPU_BASELINE].latency_ms[1]["p50"], ort.latency_ms[1]["p50"]
    assert ort.speedup_vs_reference[1] == pytest.approx(base_p50 / ort_p50)
    assert "CPU targets' speedups against the CPU baseline" in report["reference"]["device"]


def test_the_engine_runner_is_timed_against_the_gpu_reference(tmp_path):
    """The real runner classes (not loaded: no TensorRT or CUDA needed to read where they run)."""
    from edgefocal.backends.tensorrt.runner import QDQProxyRunner, TensorRTRunner

    subjects = torch_subjects(FakeGpuRunner(1.0), None, FixedRunner(1.0)) + [
        _artifact("tensorrt int8 (engine)", TensorRTRunner(tmp_path / "m.engine")),
        _artifact("tensorrt int8 (Q/DQ ONNX via ONNX Runtime)", QDQProxyRunner(tmp_path / "m.onnx"))]
    groups = {base: [s.row.label for s in group] for base, group in latency_groups(subjects).items()}
    assert groups[REFERENCE] == [REFERENCE, "tensorrt int8 (engine)"]
    assert groups[CPU_BASELINE] == [CPU_BASELINE, "tensorrt int8 (Q/DQ ONNX via ONNX Runtime)"]


def test_rows_carry_figures_as_fields_and_backend_facts_apart():
    subjects = torch_subjects(FixedRunner(40.0), None) + [_artifact("openvino int8", FixedRunner(10.0))]
    ref, art = verify(subjects, IMAGES, LABELS, BENCH)
    assert art.facts == {} and art.agreement == 1.0 and art.device == "cpu 10.0 ms" and art.latency_ms[1]["p50"] == 10.0
    d = art.to_dict()  # flat, as report.json has it; unset flags and figures left out
    assert list(d)[:4] == ["label", "target", "precision", "requested"] and "no_latency" not in d and "top5" in d
    assert Row.from_dict(d) == art and Row.from_dict(ref.to_dict()) == ref


def test_an_artifact_row_keeps_report_json_shape_of_before(tmp_path):
    """The dict verify/compare.py built before Row: path, size_bytes and skipped always, then the backend's
    facts flat, then the flags that are set; a fact named like a field (Core ML's no_latency) sets the field."""
    from edgefocal.core import Artifact
    from edgefocal.verify.compare import artifact_subject

    (tmp_path / "model.onnx").write_bytes(b"x" * 10)
    art = Artifact("onnxruntime", "int8", tmp_path / "model.onnx", None, skipped="not here", variant="U8S8 Q/DQ",
                   required=True, info={"engine_command": "trtexec --onnx=model.onnx", "no_latency": "macOS only"})
    subject = artifact_subject(art, tmp_path)
    row = subject.row
    assert subject.runner is None and row.no_latency == "macOS only" and row.facts == {
        "engine_command": "trtexec --onnx=model.onnx"}
    assert row.to_dict() == {"label": "onnxruntime int8 (U8S8 Q/DQ)", "target": "onnxruntime", "precision": "int8",
                             "path": "model.onnx", "size_bytes": 10, "requested": True, "skipped": "not here",
                             "engine_command": "trtexec --onnx=model.onnx", "variant": "U8S8 Q/DQ", "required": True,
                             "no_latency": "macOS only"}
    assert Row.from_dict(row.to_dict()) == row


class LiveCountingRunner(FixedRunner):
    """Records how many runners of its group are loaded whenever it predicts (eval) and is timed (benchmark)."""

    def __init__(self, live: set, seen: dict):
        super().__init__(1.0)
        self.live, self.seen = live, seen

    def load(self) -> None:
        self.live.add(id(self))

    def close(self) -> None:
        self.live.discard(id(self))

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.seen["eval"] = max(self.seen.get("eval", 0), len(self.live))
        return super().infer(x)

    def timed_infer(self, x: np.ndarray, repeats: int) -> list[float]:
        self.seen["benchmark"] = min(self.seen.get("benchmark", 99), len(self.live))
        return super().timed_infer(x, repeats)


def test_each_runner_evaluates_alone_then_all_are_timed_together():
    """At 224² each runtime's buffers at the eval batch take gigabytes: evaluation holds one runner at a time,
    the interleaved benchmark reloads them all, and nothing stays loaded afterwards."""
    live, seen = set(), {}
    runners = [LiveCountingRunner(live, seen) for _ in range(4)]
    subjects = torch_subjects(runners[0], runners[1]) + [_artifact(f"x{i} int8", r) for i, r in enumerate(runners[2:])]
    rows = verify(subjects, IMAGES, LABELS, BENCH)
    assert seen == {"eval": 1, "benchmark": 4} and live == set()
    assert all(r.agreement == 1.0 and r.eval_seconds is not None for r in rows)


def test_an_unrequested_artifact_reads_its_first_images_a_batch_at_a_time(tmp_path):
    """The FP32 artifacts of an INT8 build are checked on the first bench.unrequested_images: from a store, as
    a view of those rows, never read whole (500 images at 224² held 301 MB per FP32 artifact through verify)."""
    from edgefocal.imagestore import ImageStore, write_store
    from edgefocal.verify.compare import _eval_images

    x = np.arange(20 * 16, dtype=np.float32).reshape(20, 1, 4, 4)
    store = write_store(tmp_path / "eval.npy", (1, 4, 4), len(x), [x])
    subject = Subject(Row("openvino fp32", "openvino", "fp32", path="openvino/model_fp32.xml", requested=False), None)
    first = _eval_images(subject, store, unrequested=8)
    assert isinstance(first, ImageStore) and len(first) == 8 and subject.row.eval_images == 8
    np.testing.assert_array_equal(first[:], x[:8])
    requested = Subject(Row("openvino int8", "openvino", "int8", path="openvino/model_int8.xml", requested=True), None)
    assert _eval_images(requested, store, unrequested=8) is store
