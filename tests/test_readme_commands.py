"""Every command in README's "Common commands" runs here as README writes it, in order, in one working
directory, and exits as README says it does ("Use in CI": tests/test_readme_ci_commands.py, beside it, so
that the two run on two workers). What stands in, and why: tests/readme_commands.py."""
from __future__ import annotations

import numpy as np
import pytest

from readme_commands import COMMON, RANDOM_WEIGHTS, fast_recipes, readme_commands, readme_env, run_in_order

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, default_model, fmnist_calibration):
    """A working directory holding what README's commands name."""
    import timm
    import torch
    from imagefolders import write_imagefolder
    from qdq_helpers import qdq_onnx_for_tensorrt

    from edgefocal.data import balanced_subset, fashion_mnist
    from edgefocal.export import onnx_from_torch

    d = tmp_path_factory.mktemp("readme")
    fast_recipes(d)
    torch.manual_seed(0)
    torch.save(timm.create_model("focalnet_tiny_srf").state_dict(), d / "focalnet_tiny_srf.pth")
    train, test = fashion_mnist("train"), fashion_mnist("test")
    # 20 images: the 224² model's search measures each of its 64 parts on half of them (the other half confirms)
    write_imagefolder(d / "data" / "calib", train, balanced_subset(train.labels, 20, seed=0))
    write_imagefolder(d / "data" / "val", test, balanced_subset(test.labels, 20, seed=0))
    test.load(int(np.flatnonzero(test.labels == 6)[0])).save(d / "shirt.png")  # class 6: Shirt
    fp32 = onnx_from_torch(default_model.model, tuple(default_model.data_config["input_size"]), d / "fp32.onnx")
    qdq_onnx_for_tensorrt(fp32, fmnist_calibration[:64], "focalnet", d / "model_int8_qdq.onnx", log=lambda s: None)
    return d


def test_every_common_command_runs_and_exits_as_readme_says(workdir, tmp_path):
    commands = readme_commands(COMMON)
    assert len(commands) >= 9 and any(c.startswith("python -m edgefocal build") for c in commands)
    run_in_order(commands, workdir, readme_env(tmp_path / "step_summary.md"))
    assert (workdir / "build" / "edgefocal" / "report.md").exists()
    assert (workdir / "build" / "openvino-int8" / "report.json").exists()


def test_the_readme_sections_list_the_commands_these_files_run():
    commands = readme_commands()
    assert len(commands) >= 12 and any(c.startswith("edgefocal matrix") for c in commands)
    assert "python -m edgefocal doctor" in commands
    assert any(c.startswith("python -m edgefocal engine") for c in commands)
    assert any(RANDOM_WEIGHTS in c for c in commands)
    assert all(c.split()[0] in ("python", "edgefocal") for c in commands), commands
