"""Optional short recovery: distil the FP32 model into the pruned one on the calibration images.

A few hundred steps of KL(teacher ‖ student) on logits (T = 2) with AdamW over the calibration images;
the teacher's soft labels carry far more signal per image than class labels, and the pruned model starts
close to the teacher, so a few hundred images suffice. 2:4 zeros are kept by re-applying the mask after
every step."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def distill(student: nn.Module, teacher: nn.Module, images: torch.Tensor, steps: int, batch: int = 64,
            lr: float = 2e-4, temperature: float = 2.0, log=print) -> dict:
    """Train `student` in place; returns its KL to the teacher on the calibration images before/after.
    If distillation made it worse, the student keeps its weights from before."""
    def kl() -> float:
        with torch.inference_mode():
            s, t = student(images), teacher(images)
        return float(F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True, reduction="batchmean"))

    masks = {p: (p != 0) for n, p in student.named_parameters() if p.dim() == 4 and (p == 0).float().mean() > 0.4}
    before = kl()
    start = copy.deepcopy(student.state_dict())
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    student.train()
    for step in range(steps):
        idx = torch.randint(0, len(images), (min(batch, len(images)),), generator=gen)
        x = images[idx]
        with torch.no_grad():
            t = teacher(x)
        s = student(x)
        loss = F.kl_div(F.log_softmax(s / temperature, 1), F.log_softmax(t / temperature, 1), log_target=True,
                        reduction="batchmean") * temperature**2
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p, m in masks.items():
                p.mul_(m)
    student.eval()
    after = kl()
    kept = after < before
    if not kept:  # e.g. least squares already matched the teacher on these images: Adam's steps only add noise
        student.load_state_dict(start)
    log(f"recovery: {steps} distillation steps, calibration KL {before:.4f} → {after:.4f}"
        + ("" if kept else " (worse: the un-distilled weights are kept)"))
    return {"steps": steps, "kl_before": before, "kl_after": after, "kept": kept}
