"""Runtime profiles mapped back to FocalNet modules."""
from __future__ import annotations

import numpy as np

from edgefocal.backends.onnxruntime.profile import onnxruntime_op_times
from edgefocal.backends.openvino.profile import openvino_op_times
from edgefocal.naming import OTHER, by_module, by_stage, module_of_op


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
