"""Parameters and multiply-accumulates of a FocalNet at its input size.

Hand-counted with forward hooks on Conv2d/Linear (MACs = output elements × input channels per group ×
kernel area), because fvcore and thop are not installed here, and both count FocalNet's
activation×activation products and LayerNorms inconsistently. Only convolutions and linear layers
are counted: they are > 97 % of FocalNet's arithmetic and the part that pruning changes. A depthwise
conv on a 1×1 map still counts its full kernel (what the runtime executes with zero padding)."""
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


def conv_macs(conv: nn.Conv2d, out_hw: tuple[int, int]) -> int:
    kh, kw = conv.kernel_size
    return conv.out_channels * out_hw[0] * out_hw[1] * (conv.in_channels // conv.groups) * kh * kw


def count(model: nn.Module, input_size: tuple[int, ...]) -> Count:
    """Params and MACs of `model` for one input of shape `input_size` (C, H, W)."""
    per: dict[str, int] = {}
    hooks = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, n=name: per.__setitem__(n, conv_macs(m, tuple(o.shape[-2:])))))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, n=name: per.__setitem__(n, m.in_features * o.numel() // o.shape[0])))
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
    params = sum(p.numel() for p in model.parameters())
    return Count(params=params, macs=sum(per.values()), per_module=per)
