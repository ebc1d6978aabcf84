"""Parameters and multiply-accumulates of a FocalNet at its input size, from torch's own FlopCounterMode.

FlopCounterMode counts the convolutions and matrix multiplies (FLOPs = 2 × MACs, grouped and depthwise
convs included) and nothing elementwise: that is > 97 % of FocalNet's arithmetic and the part pruning
changes. Per-module figures are kept for the Conv2d/Linear leaves, which the pruning planner divides."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class Count:
    params: int
    macs: int
    per_module: dict[str, int] = field(default_factory=dict)  # module name -> MACs at batch 1

    def macs_under(self, prefix: str) -> int:
        return sum(v for k, v in self.per_module.items() if k == prefix or k.startswith(prefix + "."))


def count(model: nn.Module, input_size: tuple[int, ...]) -> Count:
    """Params and MACs of `model` for one input of shape `input_size` (C, H, W)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.eval()(torch.zeros(1, *input_size))
    flops = counter.get_flop_counts()
    root = type(model).__name__
    per = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and f"{root}.{name}" in flops:
            per[name] = sum(flops[f"{root}.{name}"].values()) // 2
    total = sum(flops["Global"].values()) // 2 if "Global" in flops else 0
    return Count(params=sum(p.numel() for p in model.parameters()), macs=total, per_module=per)
