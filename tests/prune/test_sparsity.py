"""The 2:4 verifier on hand-made weights."""
from __future__ import annotations

import torch
from torch import nn

from edgefocal.prune.sparsity import candidates, check_2of4, is_2of4


def test_pattern_on_hand_made_weights():
    ok = torch.tensor([[1.0, 0, 0, 2, 0, 0, 3, 4], [0, 0, 0, 0, 5, 0, 6, 0]])
    assert is_2of4(ok)
    bad = ok.clone()
    bad[1, 5] = 7.0  # the second group of row 1 now has only one zero
    assert not is_2of4(bad)
    assert not is_2of4(torch.ones(2, 6))  # 6 inputs cannot be grouped by 4
    conv = torch.zeros(2, 4, 3, 3)
    conv[:, :2] = 1.0  # two non-zeros per group at every kernel position
    assert is_2of4(conv)
    conv[0, 2, 1, 1] = 1.0
    assert not is_2of4(conv)


def test_checker_names_offending_block_convs(tiny_focalnet):
    names = candidates(tiny_focalnet)
    assert len(names) == 5 * 4 and all(n.split(".")[-1] in ("f", "h", "proj", "fc1", "fc2") for n in names)
    assert check_2of4(tiny_focalnet) == names  # dense: every one offends
    assert check_2of4(tiny_focalnet, ["layers.0.blocks.0.missing"]) == ["layers.0.blocks.0.missing"]
    assert not any(isinstance(dict(tiny_focalnet.named_modules())[n], nn.Conv2d) and
                   dict(tiny_focalnet.named_modules())[n].groups > 1 for n in names)
