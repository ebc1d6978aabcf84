"""A backend defined outside edgefocal, in this test module, with no edit under edgefocal/: registered with
`edgefocal.backends.register`, it goes through the whole build (quantize, package, verify, gate, report,
manifest) and `edgefocal predict` like a built-in one, so a new runtime needs one class and one register call.

"echo-onnx" packages the exported FP32 ONNX and an INT8 Q/DQ ONNX from ONNX Runtime's own quantize_static
(the precision plan's float parts excluded), below its own folder, and runs both with an ONNX Runtime session."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import edgefocal
from edgefocal.backends import Backend, get_backend, names, register, unregister
from edgefocal.core import Artifact, Availability, BuildContext, Quantized, Runner
from edgefocal.errors import BadInput

NAME = "echo-onnx"
FAST = {"batch_sizes": [1], "warmup": 1, "iterations": 3, "rounds": 1}


class EchoOnnxRunner(Runner):
    device = "ONNX Runtime CPU (echo-onnx test backend)"

    def __init__(self, artifact: Path, threads: int | None = None):
        super().__init__(artifact)
        self.threads = threads
        self.session = None

    def load(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        self.session = ort.InferenceSession(str(self.artifact), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]

    def close(self) -> None:
        self.session = None


class EchoOnnxBackend(Backend):
    name = NAME
    precisions = ("fp32", "int8")
    extra = ""

    def availability(self) -> Availability:
        import onnxruntime as ort

        return Availability(True, True, f"onnxruntime {ort.__version__} (a test-only backend)")

    def quantize(self, ctx: BuildContext, plan, calibration: np.ndarray) -> Quantized:
        import tempfile

        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.batches = iter([{"input": calibration[i:i + 16]} for i in range(0, len(calibration), 16)])

            def get_next(self):
                return next(self.batches, None)

        input_name = onnx.load(str(ctx.onnx_fp32), load_external_data=False).graph.input[0].name
        assert input_name == "input", input_name
        with tempfile.TemporaryDirectory(dir=ctx.workdir) as tmp:
            out = Path(tmp) / "int8.onnx"
            quantize_static(str(ctx.onnx_fp32), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["Conv", "MatMul", "Gemm"], per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=plan.nodes(False))
            model = onnx.load(str(out))
        return Quantized(model, {"variant": "ORT quantize_static Q/DQ", "float_nodes": len(plan.nodes(False))})

    def runner(self, artifact: Path, precision: str, threads: int | None = None) -> Runner:
        return EchoOnnxRunner(artifact, threads)

    def package(self, ctx: BuildContext, precision: str, quantized: Quantized | None = None) -> list[Artifact]:
        import onnx

        self.check_precision(precision)
        out = ctx.workdir / NAME
        out.mkdir(parents=True, exist_ok=True)
        fp32 = out / "model_fp32.onnx"
        shutil.copyfile(ctx.onnx_fp32, fp32)
        threads = ctx.num_threads
        arts = [Artifact(self.name, "fp32", fp32, lambda: self.runner(fp32, "fp32", threads),
                         requested=precision == "fp32")]
        if precision == "int8" and quantized is not None:
            int8 = out / "model_int8.onnx"
            onnx.save(quantized.model, str(int8))
            info = dict(quantized.info)
            arts.append(Artifact(self.name, "int8", int8, lambda: self.runner(int8, "int8", threads),
                                 variant=info.pop("variant"), info=info))
        return arts


@pytest.fixture(scope="module")
def registered():
    register(EchoOnnxBackend)
    yield EchoOnnxBackend
    unregister(NAME)


@pytest.fixture(scope="module")
def echo_build(registered, default_model, fmnist_calibration, fmnist_eval, tmp_path_factory):
    x, y = fmnist_eval
    out = tmp_path_factory.mktemp("echo") / "out"
    result = edgefocal.build(default_model.model, calibration=fmnist_calibration[:64], eval=(x[:200], y[:200]),
                             targets=[NAME], precision="int8", output=out, bench=FAST,
                             class_names=default_model.class_names, quantize={"target_agreement": None},
                             gates={"min_agreement": 0.9, "max_top1_drop": 5.0})
    return result, out


def test_registered_by_name_and_a_typo_suggests_it(registered):
    assert NAME in names() and isinstance(get_backend(NAME), EchoOnnxBackend)
    with pytest.raises(BadInput, match=f"unknown target 'echo-onnx-typo'; did you mean '{NAME}'"):
        get_backend("echo-onnx-typo")
    with pytest.raises(BadInput, match=f"target {NAME} does not support precision fp16"):
        get_backend(NAME).check_precision("fp16")


def test_build_reports_rows_for_the_custom_backend(echo_build):
    result, out = echo_build
    assert result.report == json.loads((out / "report.json").read_text())
    rows = {r["label"]: r for r in result.report["rows"]}
    int8 = rows[f"{NAME} int8 (ORT quantize_static Q/DQ)"]
    fp32 = rows[f"{NAME} fp32"]
    assert int8["target"] == NAME and int8["requested"] and not fp32["requested"]
    assert int8["path"] == f"{NAME}/model_int8.onnx" and int8["size_bytes"] > 0 and int8["float_nodes"] > 0
    assert fp32["agreement"] == 1.0 and fp32["top1"] == rows["torch fp32 (reference)"]["top1"]
    assert int8["top1"] > 0.8 and int8["agreement"] >= 0.9, int8
    assert int8["latency_ms"]["1"]["p50"] > 0 and int8["device"] == EchoOnnxRunner.device


def test_manifest_lists_its_files_with_sha256(echo_build):
    _, out = echo_build
    manifest = json.loads((out / "manifest.json").read_text())
    ours = {a["path"]: a for a in manifest["artifacts"] if a["target"] == NAME}
    assert set(ours) == {f"{NAME}/model_fp32.onnx", f"{NAME}/model_int8.onnx"}
    for path, entry in ours.items():
        assert (out / path).is_file() and len(entry["sha256"]) == 64, entry
    int8 = onnx.load(str(out / NAME / "model_int8.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in int8.graph.node) >= 10  # really quantized


def test_reports_name_it_and_gates_were_evaluated_on_it(echo_build):
    result, out = echo_build
    assert NAME in (out / "report.md").read_text() and NAME in (out / "report.html").read_text()
    ours = [g for g in result.gates if NAME in g.artifact]
    assert {g.gate for g in ours} >= {"min_agreement", "max_top1_drop"}, result.gates
    assert all(g.passed for g in ours) and result.passed


def test_predict_runs_its_artifact(echo_build, default_model, tmp_path):
    from edgefocal.data import fashion_mnist
    from edgefocal.predict import predict

    _, out = echo_build
    test = fashion_mnist("test")
    files = []
    for i in range(6):
        f = tmp_path / f"img{i}.png"
        test.load(i).save(f)
        files.append(f)
    preds = predict(out / NAME / "model_int8.onnx", files, k=3)
    assert [p.image for p in preds] == files
    assert all(len(p.top) == 3 and p.top[0][1] == default_model.class_names[p.top[0][0]] for p in preds)
    right = sum(p.top[0][0] == int(test.labels[i]) for i, p in enumerate(preds))
    assert right >= 4, [p.to_dict() for p in preds]
