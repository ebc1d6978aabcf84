"""2:4 semi-structured sparsity check: for every output channel and kernel position, each group of 4
consecutive input channels holds at least 2 zeros (the pattern TensorRT's sparse kernels need)."""
from __future__ import annotations

import re

import torch
from torch import nn

_BLOCK_1X1 = re.compile(r"\.(modulation\.(f|h|proj)|mlp\.(fc1|fc2))$")


def candidates(model: nn.Module) -> list[str]:
    """The 1×1 convs of FocalNet blocks that 2:4 applies to (depthwise convs cannot qualify)."""
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and _BLOCK_1X1.search(n) and m.groups == 1 and m.kernel_size == (1, 1)]


def is_2of4(weight: torch.Tensor) -> bool:
    """weight: (out, in, kh, kw) or (out, in); `in` must be a multiple of 4."""
    w = weight.detach()
    if w.dim() == 4:
        w = w.permute(0, 2, 3, 1).reshape(-1, w.shape[1])  # rows: (output channel, kernel position)
    if w.shape[1] % 4:
        return False
    zeros = (w.reshape(w.shape[0], -1, 4) == 0).sum(-1)
    return bool((zeros >= 2).all())


def check_2of4(model: nn.Module, names: list[str] | None = None) -> list[str]:
    """Names of the modules among `names` (default: every block 1×1 conv) that break the 2:4 pattern."""
    modules = dict(model.named_modules())
    names = candidates(model) if names is None else names
    return [n for n in names if n not in modules or not is_2of4(modules[n].weight)]
