"""Fusion spots: each rule on a hand-made graph where it fires and one where it does not, then on the Q/DQ
ONNX edgefocal writes for the embedded default (slow)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

from edgefocal.backends.tensorrt.conformance import check_fusion, check_tensorrt_qdq, main
from edgefocal.backends.tensorrt.fusion import COST, SOURCES, fusion_spots
from edgefocal.export import onnx_from_torch
from hand_graphs import HandGraph
from qdq_helpers import qdq_onnx_for_tensorrt


def _rules(model) -> list[str]:
    return [s.rule for s in fusion_spots(model)]


def test_every_rule_names_its_source_and_cost():
    rules = {"int8-channels", "int8-shuffle", "qdq-layernorm", "qdq-gelu", "dq-float-op", "q-after-float-add"}
    assert set(SOURCES) == rules and set(COST) == rules
    assert all("TensorRT" in SOURCES[r] or "ModelOpt" in SOURCES[r] or "onnx-tensorrt" in SOURCES[r] for r in rules)


@pytest.mark.parametrize("cout, int8, fires", [(67, True, True), (64, True, False), (67, False, False)])
def test_int8_channels_fire_on_f_s_2c_plus_l_plus_1(cout, int8, fires):
    h = HandGraph()
    y = h.conv("input", 32, cout, "layers.0.blocks.0.modulation.f", int8=int8)
    spots = fusion_spots(h.model(y))
    assert [s.rule for s in spots] == (["int8-channels"] if fires else [])
    if fires:
        s = spots[0]
        assert s.node == "layers.0.blocks.0.modulation.f/Conv" and s.part == "stage 1 block 1 modulation f"
        assert "2C+L+1" in s.why and "67 → 96" in s.consequence and "68 in NC/4HW4" in s.consequence


def test_int8_channels_say_when_modelopt_would_keep_the_op_float():
    h = HandGraph((1, 12, 8, 8))
    y = h.conv("input", 12, 12, "layers.0.blocks.0.mlp.fc1", k=3)  # under 16 channels and not 8-aligned
    assert "ModelOpt would leave this op float" in fusion_spots(h.model(y))[0].consequence
    h = HandGraph((1, 1, 8, 8))
    y = h.conv("input", 1, 32, "stem.proj", k=3)  # a 1-channel stem: ModelOpt quantizes it (32 outputs)
    spot = fusion_spots(h.model(y))[0]
    assert spot.part == "stem conv" and "1 → 32" in spot.consequence and "ModelOpt" not in spot.consequence


@pytest.mark.parametrize("shape, perm, fires", [((1, 8, 8, 32), [0, 3, 1, 2], True),
                                                 ((1, 1, 1, 32), [0, 3, 1, 2], False)])
def test_int8_shuffle_fires_on_a_transpose_that_moves_data(shape, perm, fires):
    h = HandGraph(shape)
    t = h.transpose(h.qdq("input"), perm, "layers.0.blocks.0.norm1")
    w = h.weight(32, 32)
    y = h.node("Conv", [t, w, h.const(np.zeros(32, np.float32))], "layers.0.blocks.0.modulation.h/Conv",
               kernel_shape=[1, 1])
    spots = [s for s in fusion_spots(h.model(y)) if s.rule == "int8-shuffle"]
    assert [(s.node, s.part) for s in spots] == ([("layers.0.blocks.0.norm1/Transpose",
                                                   "stage 1 block 1 modulation h")] if fires else [])


def test_qdq_layernorm_fires_unless_a_conv_produces_the_input():
    h = HandGraph((1, 8, 8, 32))
    s = h.node("Add", ["input", "input"], "layers.0.blocks.0.modulation/Add")
    y = h.layernorm(h.qdq(s), 32, "layers.0.blocks.0.norm2")
    assert _rules(h.model(y)) == ["qdq-layernorm"]
    h = HandGraph()
    c = h.conv("input", 32, 32, "stem.proj")
    y = h.layernorm(h.qdq(h.transpose(c, [0, 2, 3, 1], "stem.norm")), 32, "stem.norm")
    assert _rules(h.model(y)) == []  # ModelOpt's conv → LayerNorm pattern: TensorRT takes it


@pytest.mark.parametrize("inside", [True, False])
def test_qdq_gelu_fires_on_qdq_inside_the_erf_gelu(inside):
    h = HandGraph()
    y = h.gelu(h.conv("input", 32, 128, "layers.0.blocks.0.mlp.fc1", int8=False), "layers.0.blocks.0.mlp.act",
               qdq_inside=inside)
    spots = fusion_spots(h.model(y))
    assert [s.rule for s in spots] == (["qdq-gelu"] if inside else [])
    if inside:
        assert spots[0].node == "layers.0.blocks.0.mlp.act/Add" and spots[0].part == "stage 1 block 1 mlp act"


def test_dq_float_op_fires_on_an_op_without_int8_or_without_a_quantized_output():
    h = HandGraph()
    y = h.node("ReduceMean", [h.qdq("input")], "layers.0.blocks.0.modulation/ReduceMean", axes=[2, 3], keepdims=1)
    spots = fusion_spots(h.model(y))
    assert [s.rule for s in spots] == ["dq-float-op"] and "ReduceMean has no INT8" in spots[0].why
    h = HandGraph()
    p = h.node("MaxPool", [h.qdq("input")], "layers.0.pool/MaxPool", kernel_shape=[2, 2])
    assert "output is not quantized" in fusion_spots(h.model(p))[0].why
    y = h.conv(p, 32, 32, "layers.0.blocks.0.modulation.h")  # DQ → MaxPool → Q: TensorRT runs it INT8
    assert _rules(h.model(y)) == []


@pytest.mark.parametrize("skip_int8", [False, True])
def test_q_after_float_add_fires_when_the_skip_is_float(skip_int8):
    h = HandGraph()
    c = h.conv("input", 32, 32, "layers.0.blocks.0.modulation.proj")
    add = h.node("Add", [h.qdq("input") if skip_int8 else "input", c], "layers.0.blocks.0/Add")
    y = h.conv(add, 32, 64, "layers.1.downsample.proj")
    spots = fusion_spots(h.model(y))
    assert [s.rule for s in spots] == ([] if skip_int8 else ["q-after-float-add"])
    if not skip_int8:
        assert spots[0].part == "stage 1 block 1 residual" and "Quantize layer" in spots[0].consequence


def test_conformance_reports_spots_as_warnings_and_exits_0(tmp_path, capsys):
    h = HandGraph()
    model = h.model(h.conv("input", 32, 67, "layers.0.blocks.0.modulation.f"))
    assert [(v.rule, v.severity) for v in check_fusion(model)] == [("int8-channels", "warning")]
    assert check_tensorrt_qdq(model) == []  # the conformance rules proper are unchanged
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert main([str(tmp_path / "m.onnx"), "--layers"]) == 0
    out = capsys.readouterr().out
    assert "[int8-channels]" in out and "1 fusion spots" in out and "a prediction, not an engine" in out
    assert "Conv" in out and "INT8" in out  # the predicted layer list


@pytest.fixture(scope="module")
def default_qdq(default_model, fmnist_calibration, tmp_path_factory):
    d = tmp_path_factory.mktemp("fusion-default")
    fp32 = onnx_from_torch(default_model.model, (1, 32, 32), d / "default.onnx")
    for preset in ("focalnet", "focalnet-fused"):
        qdq_onnx_for_tensorrt(fp32, fmnist_calibration, preset, d / f"{preset}.onnx", log=lambda s: None)
    return d


@pytest.mark.slow
def test_spots_on_the_embedded_default(default_qdq):
    """embed 32, depths 1-1-2-1, 32² input: 5 blocks. Every f (2C+3 outputs: 67, 131, 259, 515) and the 1-channel
    stem are off the INT8 alignment; f and fc1 read through a transpose except at stage 4's 1×1 map; the
    focalnet policy keeps the skip float, so the Q before each of the 3 downsample convs stands alone."""
    spots = fusion_spots(default_qdq / "focalnet.onnx")
    assert Counter(s.rule for s in spots) == {"int8-channels": 6, "int8-shuffle": 8, "q-after-float-add": 3}
    f = [s for s in spots if s.rule == "int8-channels" and s.part.endswith("modulation f")]
    assert [s.why.split(" with ")[1].split(" ")[0] for s in f] == ["67", "131", "259", "259", "515"]
    assert {s.part for s in spots if s.rule == "int8-shuffle"} == {
        f"stage {st} block {b} {p}" for st, b in ((1, 1), (2, 1), (3, 1), (3, 2)) for p in ("modulation f", "mlp fc1")}
    fused = Counter(s.rule for s in fusion_spots(default_qdq / "focalnet-fused.onnx"))
    assert fused == {"int8-channels": 6, "int8-shuffle": 8}  # the skip is quantized: the Adds' Q fuses
