"""The GELU fusion the ONNX Runtime artifacts carry: every erf GELU becomes one com.microsoft Gelu named after
its FocalNet module, and ONNX Runtime computes the same logits with it as without it."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgefocal.backends.onnxruntime.fusions import FUSED, fuse_gelu
from edgefocal.export import onnx_from_torch


@pytest.fixture(scope="module")
def exported(default_model, tmp_path_factory) -> onnx.ModelProto:
    path = tmp_path_factory.mktemp("fusions") / "fp32.onnx"
    onnx_from_torch(default_model.model, tuple(default_model.data_config["input_size"]), path)
    return onnx.load(str(path))


def _logits(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: images})[0]


def test_every_gelu_is_one_node_named_after_its_module(exported):
    erfs = [n.name for n in exported.graph.node if n.op_type == "Erf"]
    fused = fuse_gelu(onnx.ModelProto.FromString(exported.SerializeToString()))
    gelus = [n.name for n in fused.graph.node if (n.domain, n.op_type) == FUSED]
    assert erfs and not [n for n in fused.graph.node if n.op_type in ("Erf", "Div")]
    assert sorted(gelus) == sorted(e.replace("/Erf", "/Gelu") for e in erfs)
    assert len(fused.graph.node) == len(exported.graph.node) - 4 * len(erfs)


def test_onnx_runtime_computes_the_same_logits(exported, fmnist_eval):
    images = fmnist_eval[0][:256]
    fused = fuse_gelu(onnx.ModelProto.FromString(exported.SerializeToString()))
    before, after = _logits(exported, images), _logits(fused, images)
    assert np.abs(before - after).max() < 1e-4 and (before.argmax(1) == after.argmax(1)).all()
