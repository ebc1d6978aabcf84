"""2:4 semi-structured sparsity for the 1×1 convs of FocalNet blocks, from calibration data.

SparseGPT (Frantar & Alistarh 2023): per layer, the Hessian H = 2XXᵀ/n of its calibration inputs; columns
are processed in blocks with the upper Cholesky factor of H⁻¹; in each group of 4 input columns the 2
weights with the smallest w²/[H⁻¹]_jj² are zeroed and the error is pushed onto the columns not yet
visited. Wanda instead zeroes the 2 smallest |w|·‖X_j‖₂ per group, with no update. Hand-written (≈40
lines after the reference implementation) because no maintained pip package applies SparseGPT to conv
layers of a timm model; layers are pruned in forward order, each on the inputs of the already-pruned
model, so later layers see and absorb the earlier layers' error."""
from __future__ import annotations

import re

import torch
from torch import nn

from edgefocal.prune.channels import _flat, capture_input
from edgefocal.prune.sparsity import candidates


def layer_inputs(model: nn.Module, conv: nn.Module, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """(rows, in_channels) calibration inputs of a 1×1 conv; the forward stops at the layer."""
    return _flat(capture_input(model, conv, images, batch))


def wanda_2of4(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    score = w.abs() * x.double().norm(dim=0).float()
    groups = score.reshape(w.shape[0], -1, 4)
    drop = torch.topk(groups, 2, dim=-1, largest=False).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, drop, True).reshape(w.shape)
    return w.masked_fill(mask, 0.0)


def sparsegpt_2of4(w: torch.Tensor, x: torch.Tensor, blocksize: int = 128, percdamp: float = 0.01) -> torch.Tensor:
    """w: (out, in) with in % 4 == 0; x: (rows, in). Returns the pruned and updated weights."""
    w = w.clone().double()
    cols = w.shape[1]
    h = 2 * (x.double().T @ x.double()) / max(1, x.shape[0])
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += percdamp * torch.mean(torch.diag(h)) * torch.eye(cols, dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        w1 = w[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        mask1 = torch.zeros_like(w1, dtype=torch.bool)
        for i in range(i2 - i1):
            col, d = w1[:, i], hinv1[i, i]
            if i % 4 == 0:
                tmp = w1[:, i : i + 4] ** 2 / torch.diag(hinv1)[i : i + 4].reshape(1, -1) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, 2, dim=1, largest=False).indices, True)
            q = col.masked_fill(mask1[:, i], 0.0)
            q1[:, i] = q
            e = (col - q) / d
            w1[:, i:] -= e.unsqueeze(1) @ hinv1[i, i:].unsqueeze(0)
            err1[:, i] = e
        w[:, i1:i2] = q1
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return w.float()


def prune_2of4(model: nn.Module, dense: nn.Module, images: torch.Tensor, spec, log=print) -> list[str]:
    """Make every eligible block 1×1 conv of `model` 2:4 sparse in place; returns the pruned names."""
    modules = dict(model.named_modules())
    names = [n for n in candidates(model) if modules[n].in_channels % 4 == 0
             and not any(re.search(p, n) for p in spec.exclude)]
    for n in names:
        conv = modules[n]
        x = layer_inputs(model, conv, images)
        w = conv.weight.data.reshape(conv.out_channels, -1)
        new = sparsegpt_2of4(w, x, percdamp=spec.damping) if spec.solver == "sparsegpt" else wanda_2of4(w, x)
        conv.weight.data = new.reshape(conv.weight.shape).contiguous()
    log(f"2:4 sparsity ({spec.solver}) on {len(names)} 1×1 convs")
    return names
