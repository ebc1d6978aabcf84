"""Structured channel pruning of a timm FocalNet, chosen and repaired from calibration data.

Three channel groups per block, each removable without touching the residual stream (whose LayerNorms
couple every channel, so the block width C stays):
- "mlp": hidden units of the MLP (rows of fc1, columns of fc2).
- "modulator": channels of the product q · h(ctx_all) (q rows of f, rows of h, columns of proj).
- "context": ctx channels (ctx rows of f, the depthwise focal convs of every level, columns of h).
timm's FocalModulation splits f's output with its `input_split` attribute, so a pruned module only
needs `input_split = [modulator, context, levels + 1]`: the forward stays timm's own and exports to
ONNX (dynamo) and OpenVINO unchanged. Whole focal levels are not removed: level l feeds level l+1 and
the global context, and the depthwise convs are 3 % (tiny_srf) to 8 % (the embedded default) of a block's MACs: dropping one buys little
latency for a large change in the receptive field.

Importance is activation-aware (Wanda summed per channel): ‖A_j‖₂ · Σ_i |W_next[i, j]|, with A the
channel's activation on the calibration set entering the next layer. After removal the next layer is
refitted by ridge least squares, W' = Y A_Sᵀ (A_S A_Sᵀ + λI)⁻¹, with a constant row in A_S so the
bias absorbs the removed channels' mean contribution. Y is the dense model's own residual-stream
update at that point, so the fit also undoes the error that earlier pruned blocks let through.

Why not torch-pruning: its MetaPruner never finished building the dependency graph of a FocalNet here
(9 min on 1.7M params), and its generic graph does not know that ctx channels are consumed by the
depthwise convs, the global context and h at once; FocalNet's three groups are simple enough to cut
by hand, and the least-squares repair needs the calibration activations we collect anyway."""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from edgefocal.errors import BadInput

GROUPS = ("mlp", "modulator", "context")
GROUP_MODULE = {"mlp": "mlp", "modulator": "modulation", "context": "modulation"}  # for prune.exclude


class _Stop(Exception):
    pass


@dataclass
class BlockInfo:
    name: str
    stage: int
    block: nn.Module
    hw: int  # spatial positions at this block, for the input size pruned at


def focal_blocks(model: nn.Module) -> list[tuple[str, int, nn.Module]]:
    from timm.models.focalnet import FocalNetBlock

    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, FocalNetBlock):
            m = re.match(r"layers\.(\d+)\.", name)
            out.append((name, int(m.group(1)) if m else 0, mod))
    if not out:
        raise BadInput(f"{type(model).__name__} has no timm FocalNetBlock to prune",
                       hint="channel pruning understands timm focalnet_* models only")
    return out


def group_sizes(block: nn.Module) -> dict[str, int]:
    mod = block.modulation
    return {"mlp": block.mlp.fc1.out_channels, "modulator": mod.input_split[0], "context": mod.input_split[1]}


def block_macs(block: nn.Module, keep: dict[str, int], hw: int) -> int:
    """MACs of the prunable layers of one block (f, focal convs, h, proj, fc1, fc2) for kept sizes."""
    mod = block.modulation
    c = block.mlp.fc1.in_channels
    gates = mod.input_split[2]
    q, x, m = keep["modulator"], keep["context"], keep["mlp"]
    dw = sum(fl[0].kernel_size[0] * fl[0].kernel_size[1] for fl in mod.focal_layers) * x
    return hw * (c * (q + x + gates) + dw + x * q + q * mod.proj.out_channels + 2 * c * m)


def _step(total: int, multiple: int) -> int:
    """The channel step of a group of `total` channels: `multiple`, but at most total/4."""
    while multiple > 1 and multiple * 4 > total:
        multiple //= 2
    return multiple


def _round_keep(total: int, frac_removed: float, multiple: int) -> int:
    """Kept channels, a multiple of `multiple` (OpenVINO/oneDNN block channels by 16 on AVX-512, so odd
    widths fall back to slower kernels), but at most total/4 so that narrow layers (32 channels) keep a
    fine step."""
    keep = total * (1.0 - frac_removed)
    multiple = _step(total, multiple)
    if multiple > 1:
        keep = multiple * round(keep / multiple)
        return int(min(total, max(multiple, keep)))
    return int(min(total, max(1, round(keep))))


def plan(blocks: list[BlockInfo], fractions: dict[int, float], allowed: dict[str, set[str]],
         weights: dict[str, float], multiple: int) -> dict[str, dict[str, int]]:
    """Kept channels per block and group: stage s removes fractions[s] × weights[group] of each group."""
    out = {}
    for b in blocks:
        sizes = group_sizes(b.block)
        p = fractions.get(b.stage, 0.0)
        out[b.name] = {g: (_round_keep(n, min(0.95, p * weights.get(g, 1.0)), multiple)
                           if g in allowed[b.name] else n) for g, n in sizes.items()}
    return out


def removed_macs(blocks: list[BlockInfo], kept: dict[str, dict[str, int]]) -> int:
    """MACs of `blocks` that the kept sizes remove."""
    return sum(block_macs(b.block, group_sizes(b.block), b.hw) - block_macs(b.block, kept[b.name], b.hw) for b in blocks)


def solve_fraction(blocks: list[BlockInfo], target_removed: int, stages: list[int], allowed, weights,
                   multiple: int, stage_weights: dict[int, float] | None = None) -> float:
    """The largest channel fraction p of `stages` (stage s removes p × stage_weights[s]) whose removed MACs
    stay within `target_removed`: `--prune channels:0.3` never removes more than 30 % of the MACs."""
    sw = {s: (stage_weights or {}).get(s, 1.0) for s in stages}
    in_stages = [b for b in blocks if b.stage in stages]

    def removed(p: float) -> int:
        return removed_macs(in_stages, plan(in_stages, {s: p * sw[s] for s in stages}, allowed, weights, multiple))

    hi_cap = 0.95 / (min(weights.values()) * min(sw.values()))  # plan() clamps every group at 95 %
    if removed(hi_cap) < target_removed:
        raise BadInput(f"cannot remove {target_removed} MACs from stages {stages}: the prunable channels hold only "
                       f"{removed(hi_cap)} at the 95 % cap", hint="lower prune.ratio or remove entries from prune.exclude")
    lo, hi = 0.0, hi_cap
    for _ in range(40):
        mid = (lo + hi) / 2
        if removed(mid) <= target_removed:
            lo = mid
        else:
            hi = mid
    # rounding to `multiple` makes removed(p) a step function: take the largest p still within the target
    return lo


def fill(blocks: list[BlockInfo], kept: dict[str, dict[str, int]], allowed, budget: int, multiple: int,
         stage_weights: dict[int, float] | None = None) -> dict[str, dict[str, int]]:
    """Spend what the uniform fraction left of the MAC budget (less than one rounding step everywhere) one
    channel step at a time, the stages weighted most first, never past the budget; `kept` is not changed."""
    out = {name: dict(sizes) for name, sizes in kept.items()}
    sw = stage_weights or {}
    order = sorted(blocks, key=lambda b: (-sw.get(b.stage, 1.0), b.stage, b.name))
    changed = True
    while changed and budget > 0:
        changed = False
        for b in order:
            full = group_sizes(b.block)
            for g in sorted(allowed[b.name]):
                step = _step(full[g], multiple)
                smaller = dict(out[b.name], **{g: out[b.name][g] - step})
                if smaller[g] < max(step, 0.05 * full[g]):
                    continue
                gain = block_macs(b.block, out[b.name], b.hw) - block_macs(b.block, smaller, b.hw)
                if 0 < gain <= budget:
                    out[b.name], budget, changed = smaller, budget - gain, True
    return out


# ---------------------------------------------------------------- activations on calibration data

def capture_input(model: nn.Module, module: nn.Module, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    """The input of `module` for every calibration image; the forward stops right there."""
    got = []

    def hook(_m, args):
        got.append(args[0].detach())
        raise _Stop

    h = module.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                try:
                    model(images[i : i + batch])
                except _Stop:
                    pass
    finally:
        h.remove()
    return torch.cat(got)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """NCHW → (N·H·W, C): a 1×1 conv is a linear layer over these rows."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _modulation_parts(mod: nn.Module, u: torch.Tensor):
    """timm's FocalModulation.forward up to the product, returning (q, ctx_all)."""
    q, ctx, gates = torch.split(mod.f(u), mod.input_split, 1)
    ctx_all = 0
    for lvl, layer in enumerate(mod.focal_layers):
        ctx = layer(ctx)
        ctx_all = ctx_all + ctx * gates[:, lvl : lvl + 1]
    ctx_all = ctx_all + mod.act(ctx.mean((2, 3), keepdim=True)) * gates[:, mod.focal_level :]
    if mod.normalize_modulator:
        ctx_all = ctx_all / (mod.focal_level + 1)
    return q, ctx_all


def wanda_channel_scores(acts: torch.Tensor, next_weight: torch.Tensor) -> torch.Tensor:
    """Σ_i |W[i, j]| · ‖A_j‖₂ per input channel j of the next layer (acts: rows × channels)."""
    return next_weight.reshape(next_weight.shape[0], -1).abs().sum(0) * acts.double().norm(dim=0).float()


def top_channels(scores: torch.Tensor, keep: int) -> torch.Tensor:
    return torch.sort(torch.topk(scores, keep).indices).values


def ridge_fit(a: torch.Tensor, y: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """min ‖Y − W A − b‖² + λ‖W‖² over (W, b); a: rows × k, y: rows × out. λ = damping · mean diag(AᵀA).

    The constant column makes b = mean(Y − W A): the removed channels' mean contribution is folded in."""
    a64 = torch.cat([a.double(), torch.ones(a.shape[0], 1, dtype=torch.float64)], 1)
    g = a64.T @ a64
    lam = damping * g.diagonal()[:-1].mean().clamp_min(1e-12)
    reg = torch.full((g.shape[0],), float(lam), dtype=torch.float64)
    reg[-1] = 0.0
    sol = torch.linalg.solve(g + torch.diag(reg), a64.T @ y.double())  # (k+1) × out
    return sol[:-1].T.float().contiguous(), sol[-1].float().contiguous()


# ---------------------------------------------------------------- surgery

def _conv_like(conv: nn.Conv2d, cin: int, cout: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups,
                     bias=conv.bias is not None, padding_mode=conv.padding_mode)


def _slice_conv(conv: nn.Conv2d, out_idx=None, in_idx=None) -> nn.Conv2d:
    w = conv.weight.data
    b = conv.bias.data if conv.bias is not None else None
    if out_idx is not None:
        w = w[out_idx]
        b = b[out_idx] if b is not None else None
    if in_idx is not None and conv.groups == 1:
        w = w[:, in_idx]
    depthwise = conv.groups > 1
    new = _conv_like(conv, w.shape[0] if depthwise else w.shape[1], w.shape[0], groups=w.shape[0] if depthwise else 1)
    new.weight.data.copy_(w)
    if b is not None:
        new.bias.data.copy_(b)
    return new


def _set_linear(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> None:
    conv.weight.data = weight.reshape(conv.weight.shape[0], -1, 1, 1).contiguous()
    if conv.bias is None:
        conv.bias = nn.Parameter(bias)
    else:
        conv.bias.data = bias


def _linear(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1×1 conv applied to flattened rows."""
    out = x @ conv.weight.reshape(conv.weight.shape[0], -1).T
    return out + conv.bias if conv.bias is not None else out


def _fix_next(conv: nn.Conv2d, acts: torch.Tensor, keep_idx: torch.Tensor, target: torch.Tensor | None,
              mode: str, damping: float) -> nn.Conv2d:
    """Replace `conv` (a 1×1 conv reading `acts`) by one reading only `keep_idx`, repaired per `mode`."""
    new = _slice_conv(conv, in_idx=keep_idx)
    if mode == "lstsq":
        w, b = ridge_fit(acts[:, keep_idx], target, damping)
        _set_linear(new, w, b)
    elif mode == "bias":  # fold the removed channels' mean contribution into the bias only
        gone = torch.ones(acts.shape[1], dtype=torch.bool)
        gone[keep_idx] = False
        w = conv.weight.reshape(conv.weight.shape[0], -1)
        bias = new.bias.data if new.bias is not None else torch.zeros(w.shape[0])
        _set_linear(new, new.weight.reshape(w.shape[0], -1), bias + w[:, gone] @ acts[:, gone].mean(0))
    return new


def _identity_path(block: nn.Module) -> tuple[bool, bool]:
    """Whether the modulation / MLP branch adds straight into the stream (no post-norm, no layer scale)."""
    ident = lambda m: isinstance(m, nn.Identity)  # noqa: E731
    return (ident(block.norm1_post) and ident(block.ls1) and ident(block.drop_path1),
            ident(block.norm2_post) and ident(block.ls2) and ident(block.drop_path2))


def prune_block(block: nn.Module, dense_block: nn.Module, x: torch.Tensor, x_dense: torch.Tensor,
                keep: dict[str, int], mode: str, damping: float) -> dict[str, int]:
    """Prune one FocalNetBlock in place, given its calibration input on the pruned (x) and on the dense
    (x_dense) model. mode: "lstsq" refits the next layer, "bias" only folds the removed channels' mean
    into its bias, "none" just cuts. The least-squares target is the dense model's stream after the branch
    (minus the pruned stream before it) where the branch adds straight into the stream, which also repairs
    the error of earlier pruned blocks; with a post-norm or layer scale it is the unpruned layer's output."""
    mod, mlp = block.modulation, block.mlp
    mod_direct, mlp_direct = _identity_path(block)
    if mod.use_post_norm and keep["modulator"] < mod.input_split[0]:
        keep = dict(keep, modulator=mod.input_split[0])  # a LayerNorm over the product couples its channels
    cm, cc, ng = mod.input_split
    with torch.no_grad():
        xd_mid = x_dense + dense_block.drop_path1(dense_block.ls1(dense_block.norm1_post(
            dense_block.modulation(dense_block.norm1(x_dense)))))
        xd_out = dense_block(x_dense)
        # ---- modulation: context channels (repair h), then modulator channels (repair proj)
        q, ctx_all = _modulation_parts(mod, block.norm1(x))
        ctx_rows, q_rows = _flat(ctx_all), _flat(q)
        h_full = _linear(mod.h, ctx_rows)
        prod = q_rows * h_full
        y_mod = _flat(xd_mid - x) if mod_direct else _linear(mod.proj, prod)
        sc = top_channels(wanda_channel_scores(ctx_rows, mod.h.weight), keep["context"])
        sm = top_channels(wanda_channel_scores(prod, mod.proj.weight), keep["modulator"])
        if len(sc) < cc or len(sm) < cm or (mode == "lstsq" and mod_direct):
            h_new = _slice_conv(mod.h, out_idx=sm)
            if len(sc) < cc:
                h_new = _fix_next(h_new, ctx_rows, sc, h_full[:, sm], mode, damping)
            if mode == "lstsq":  # refit proj on the product the pruned h really produces
                prod_new = torch.zeros_like(prod)
                prod_new[:, sm] = q_rows[:, sm] * _linear(h_new, ctx_rows[:, sc])
                proj_new = _fix_next(mod.proj, prod_new, sm, y_mod, mode, damping)
            else:
                proj_new = _fix_next(mod.proj, prod, sm, None, mode, damping)
            rows = torch.cat([sm, cm + sc, torch.arange(cm + cc, cm + cc + ng)])
            mod.f = _slice_conv(mod.f, out_idx=rows)
            for layer in mod.focal_layers:
                layer[0] = _slice_conv(layer[0], out_idx=sc)
            mod.h, mod.proj = h_new, proj_new
            mod.input_split = [len(sm), len(sc), ng]
        # ---- MLP: hidden units (repair fc2)
        x_mid = x + block.drop_path1(block.ls1(block.norm1_post(mod(block.norm1(x)))))
        hidden = _flat(mlp.norm(mlp.act(mlp.fc1(block.norm2(x_mid)))))
        y_mlp = _flat(xd_out - x_mid) if mlp_direct else _linear(mlp.fc2, hidden)
        s = top_channels(wanda_channel_scores(hidden, mlp.fc2.weight), keep["mlp"])
        if len(s) < mlp.fc1.out_channels or (mode == "lstsq" and mlp_direct):
            mlp.fc1 = _slice_conv(mlp.fc1, out_idx=s)
            mlp.fc2 = _fix_next(mlp.fc2, hidden, s, y_mlp, mode, damping)
    return {"mlp": mlp.fc1.out_channels, "modulator": mod.input_split[0], "context": mod.input_split[1]}


def prune_channels(model: nn.Module, dense: nn.Module, images: torch.Tensor, kept: dict[str, dict[str, int]],
                   mode: str = "lstsq", damping: float = 0.01, log=print) -> dict[str, dict[str, int]]:
    """Prune `model` (a copy of `dense`) block by block, in forward order, to the `kept` sizes."""
    dense_blocks = dict((n, b) for n, _, b in focal_blocks(dense))
    out = {}
    for name, _stage, block in focal_blocks(model):
        x = capture_input(model, block, images)
        x_dense = capture_input(dense, dense_blocks[name], images)
        out[name] = prune_block(block, dense_blocks[name], x, x_dense, kept[name], mode, damping)
    return out
