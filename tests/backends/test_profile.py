"""Runtime profiles mapped back to FocalNet modules: the per-op profilers of OpenVINO and ONNX Runtime on the
embedded default's FP32 and INT8 artifacts (what each executed op is, which part it serves, its MACs), and
`op_times`, which the pruning planner and the precision search's probes read."""
from __future__ import annotations

import numpy as np
import pytest
from roundtrip import build, make_context

from edgefocal.backends import get_backend
from edgefocal.backends.onnxruntime.profile import onnxruntime_op_times
from edgefocal.backends.openvino.profile import openvino_op_times
from edgefocal.naming import BY_CONSUMERS, BY_PRODUCERS, OTHER, by_module, by_stage, module_of_op

TARGETS = ("openvino", "onnxruntime")


def test_op_names_map_to_modules():
    assert module_of_op("layers.0.blocks.0.mlp.fc1/Conv/WithoutBiases") == "layers.0.blocks.0.mlp.fc1"
    assert module_of_op("stem.proj/Conv") == "stem.proj"
    assert module_of_op("Reorder_1234") == OTHER and module_of_op("Transpose_token_5") == OTHER
    times = {"layers.1.blocks.0.mlp.fc1/Conv": 2.0, "layers.1.downsample.proj/Conv": 1.0, "stem.proj/Conv": 0.5,
             "ReorderInput": 0.25}
    assert by_stage(by_module(times)) == {"1": 3.0, OTHER: 0.75}


def test_real_profiles_name_modules(tiny_focalnet, tmp_path):
    import openvino as ov

    from edgefocal.export import onnx_from_torch

    path = onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path / "t.onnx")
    x = np.zeros((1, 1, 32, 32), np.float32)
    for times in (openvino_op_times(ov.convert_model(str(path)), x, 1, "f32", repeats=3),
                  onnxruntime_op_times(path, x, 1, repeats=3)):
        modules = by_module(times)
        assert sum(times.values()) > 0
        assert "layers.0.blocks.0.mlp.fc1" in modules and set(by_stage(modules)) >= {"0", "1", "2", "3"}


@pytest.fixture(scope="module")
def artifacts(default_model, fmnist_calibration, tmp_path_factory):
    """{(target, precision): path} of the default's FP32 and INT8 artifacts on both CPU runtimes."""
    out = {}
    for target in TARGETS:
        workdir = tmp_path_factory.mktemp(f"profile-{target}")
        ctx = make_context(default_model.model, default_model.data_config, fmnist_calibration[:32], workdir)
        out |= {(target, a.precision): a.path for a in build(target, "int8", ctx)}
    return out


@pytest.fixture(scope="module")
def macs(default_model):
    from edgefocal.prune.macs import count

    return count(default_model.model, tuple(default_model.data_config["input_size"])).macs


def profiled(target: str, path, precision: str, batch: int = 1, runs: int = 5):
    x = np.random.default_rng(0).standard_normal((batch, 1, 32, 32)).astype(np.float32)
    with get_backend(target).profiler(path, precision, 1) as profiler:
        for _ in range(2 + runs):
            profiler.infer(x)
        return profiler.ops(skip=2), profiler.wall_ms


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("precision", ("fp32", "int8"))
def test_every_executed_op_says_what_it_is(target, precision, artifacts, macs):
    ops, wall = profiled(target, artifacts[(target, precision)], precision)
    assert len(wall) == 7 and all(ms > 0 for ms in wall)
    assert ops and all(op.ms >= 0 and op.kind and op.kernel for op in ops)
    assert sum(op.macs for op in ops) == macs  # every conv and matmul of the graph, on the op that ran it
    attributed = sum(op.ms for op in ops if op.module != OTHER) / sum(op.ms for op in ops)
    assert attributed > 0.97, [(op.name, op.ms) for op in ops if op.module == OTHER]
    assert all(op.attributed_by for op in ops if op.module != OTHER)


@pytest.mark.parametrize("target", TARGETS)
def test_int8_kernels_are_told_from_float_ones(target, artifacts):
    int8, _ = profiled(target, artifacts[(target, "int8")], "int8")
    fp32, _ = profiled(target, artifacts[(target, "fp32")], "fp32")
    dense = [op for op in int8 if op.macs and "focal_layers" not in op.module and op.module != "head.fc"]
    assert dense and all(op.int8 for op in dense), [(op.name, op.precision) for op in dense if not op.int8]
    assert not any(op.int8 for op in int8 if op.module == "head.fc")  # the preset keeps the head float
    assert not any(op.int8 for op in fp32) and {op.precision for op in fp32 if op.macs} == {"f32"}


def test_openvino_places_its_own_ops_by_the_graph(artifacts):
    """The plugin decomposes the FP32 IR's channel LayerNorms (MVN) into ops named by its own counter
    (ReduceMean_9838; the INT8 IR's norms run as named NormalizeL2 ops instead); the head's matmul and bias run
    as one FullyConnected, named after the head's node (backends/openvino keeps the output op's ONNX name) and
    counted with the head's MACs."""
    ops, _ = profiled("openvino", artifacts[("openvino", "int8")], "int8")
    (head,) = [op for op in ops if op.kind.startswith("FullyConnected")]
    assert head.name.startswith("head.fc/") and head.module == "head.fc" and head.macs == 256 * 10
    ops, _ = profiled("openvino", artifacts[("openvino", "fp32")], "fp32")
    decomposed = [op for op in ops if op.name.startswith("ReduceMean_")]
    assert decomposed and all(op.attributed_by == BY_CONSUMERS and op.module.endswith(("norm", "norm1", "norm2"))
                              for op in decomposed), [(op.name, op.module) for op in decomposed]


def test_onnxruntime_names_its_fused_nodes_after_ours(artifacts):
    ops, _ = profiled("onnxruntime", artifacts[("onnxruntime", "fp32")], "fp32")
    nchwc = [op for op in ops if op.name.endswith("_nchwc")]
    assert nchwc and all(op.macs and op.module != OTHER and op.kernel == "CPU:com.microsoft.nchwc.Conv" for op in nchwc)
    reorders = [op for op in ops if op.kind in ("ReorderInput", "ReorderOutput")]
    assert reorders and all(op.attributed_by in (BY_CONSUMERS, BY_PRODUCERS) for op in reorders)
    int8, _ = profiled("onnxruntime", artifacts[("onnxruntime", "int8")], "int8")
    fused = [op for op in int8 if op.kind == "QLinearConv"]
    assert fused and all("_token_" in op.name and op.module == op.sources[1].split("/")[0] for op in fused)


def test_macs_scale_with_the_batch(artifacts, macs):
    for target in TARGETS:
        ops, _ = profiled(target, artifacts[(target, "int8")], "int8", batch=3, runs=2)
        assert sum(op.macs for op in ops) == 3 * macs


@pytest.mark.parametrize("target", TARGETS)
def test_op_times_still_serves_its_callers(target, artifacts):
    """prune/latency.py and the search's probes read {op: ms} through naming.by_module."""
    times = get_backend(target).op_times(artifacts[(target, "int8")], np.zeros((1, 1, 32, 32), np.float32), 1)
    assert times and sum(times.values()) > 0
    modules = by_module(times)
    assert sum(v for m, v in modules.items() if m != OTHER) / sum(modules.values()) > 0.5
    assert set(by_stage(modules)) >= {"0", "1", "2", "3"}
