"""benchmarks/ceiling.py: torch's conv-and-matmul share from its real profiler, an artifact's MAC-op ms from a
profile, and the table's ratios (the whole run builds two 224² FocalNets: benchmarks only)."""
from __future__ import annotations

import pytest
import torch
from benchmark_scripts import benchmark_script

from edgefocal.core import ExecutedOp
from edgefocal.verify.profile import Profile


@pytest.fixture(scope="module")
def ceiling():
    with benchmark_script("ceiling") as module:
        yield module


def test_torch_mac_share_is_most_of_a_conv_stack_and_none_of_elementwise_ops(ceiling):
    torch.manual_seed(0)
    convs = torch.nn.Sequential(*[torch.nn.Conv2d(64, 64, 3, padding=1) for _ in range(3)]).eval()
    elementwise = torch.nn.Sequential(torch.nn.GELU(), torch.nn.Tanh()).eval()
    x = torch.randn(1, 64, 32, 32)
    assert ceiling.torch_mac_share(convs, x) > 0.5
    assert ceiling.torch_mac_share(elementwise, x) == 0.0


def _profile(measured_ms: float, mac_op_ms: float, other_ms: float) -> Profile:
    ops = [ExecutedOp("conv", "Convolution", "brgconv", "i8", mac_op_ms, macs=10**9),
           ExecutedOp("norm", "NormalizeL2", "jit", "f32", other_ms)]
    return Profile("model_int8.xml", "openvino", "int8", 1, 2, 10, ops, measured_ms, measured_ms)


def test_mac_ms_is_the_profilers_figure_scaled_down_only_where_it_counts_more_than_the_clock(ceiling):
    assert ceiling.mac_ms(_profile(10.0, 6.0, 2.0)) == pytest.approx(6.0)  # 2 ms unseen by the profiler
    assert ceiling.mac_ms(_profile(10.0, 9.0, 3.0)) == pytest.approx(9.0 * 10.0 / 12.0)  # counters overlap


def test_table_gives_each_ratio_per_artifact_as_median_and_range(ceiling):
    rounds = ceiling.Rounds(torch_ms=[80.0, 100.0], torch_mac_share=[0.8, 0.8])
    rounds.add("tiny: openvino int8", 80.0, 64.0, 20.0, 16.0)
    rounds.add("tiny: openvino int8", 100.0, 80.0, 20.0, 16.0)
    text = "\n".join(ceiling.table(rounds))
    assert "torch FP32 eager: 90.0 ms" in text and "80 % of it" in text
    # measured 4.0× and 5.0×; MAC-only 5.0× and 6.25×; kernels 4.0× and 5.0×
    assert "| tiny: openvino int8 | 20.00 | 16.00 | 4.50× (4.00–5.00×) | 5.62× (5.00–6.25×) | 4.50× (4.00–5.00×) |" in text
