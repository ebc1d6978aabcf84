"""Short recovery: distil the unpruned FP32 model into the pruned one on unlabeled held-out images.

Least squares repairs each layer on its own; distillation repairs the whole network against the teacher's
logits, which carry far more signal per image than class labels, so no labels are needed, only more images
than calibration's few hundred: on the default at 30 %, 600 steps on the 300 calibration images lowered
agreement with the unpruned model (98.83 % → 98.69 %), on 8000 held-out images raised it to 99.42 %
(benchmarks/pruning.py's recovery section; its run of 2026-12-04 timed out before writing pruning.md).

The loss is the mean squared error between logits (Ba & Caruana's logit matching): in an ad-hoc run on the default at 30 % of
MACs, 600 steps at lr 3e-4 on 8000 held-out train images took agreement with the unpruned model from 98.83 %
(least squares alone) to 99.32 %, KL at T = 1 to 99.16 %. AdamW with a cosine schedule and minibatches drawn
by a seeded generator, so a build on the same machine repeats itself whatever the load. Whether the result is
kept is decided on images it was not trained on. 2:4 zeros are kept by re-applying the mask after every step."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FORWARDS_PER_STEP = 3  # a training step costs about a forward pass and a backward pass of twice its work
BATCH = 128
MIN_STEPS = 50  # fewer steps of Adam move the weights without settling them: not worth the time


def step_budget(steps: int, batch: int, gmacs_per_image: float, max_gmacs: float | None) -> int:
    """The steps the recipe allows: `steps`, fewer when they would cost more than `max_gmacs` (None: no
    bound). Decided by MACs, not a clock, so a busy machine trains the same steps."""
    if max_gmacs is None or gmacs_per_image <= 0:
        return steps
    return min(steps, int(max_gmacs / (FORWARDS_PER_STEP * batch * gmacs_per_image)))


def _logits(model: nn.Module, images, batch: int = 256) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(torch.from_numpy(np.ascontiguousarray(images[i : i + batch])))
                          for i in range(0, len(images), batch)])


def distill(student: nn.Module, teacher: nn.Module, images, steps: int, check: np.ndarray, batch: int = BATCH,
            lr: float = 3e-4, log=print) -> dict:
    """Train `student` in place on `images` (an array or a memmap; never labels) for `steps` minibatches;
    returns its logits' mean squared error to the teacher's on the `check` images before and after. If
    distillation made that worse, the student keeps its weights from before."""
    masks = {p: (p != 0) for p in student.parameters() if p.dim() == 4 and (p == 0).float().mean() > 0.4}
    teacher_logits = _logits(teacher, images)
    check_teacher = _logits(teacher, check)
    before = float(F.mse_loss(_logits(student, check), check_teacher))
    start = copy.deepcopy(student.state_dict())
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(0)
    student.train()
    for step in range(steps):
        idx = torch.randint(0, len(images), (min(batch, len(images)),), generator=gen).sort().values
        x = torch.from_numpy(np.ascontiguousarray(images[idx.numpy()]))
        loss = F.mse_loss(student(x), teacher_logits[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        with torch.no_grad():
            for p, m in masks.items():
                p.mul_(m)
        if (step + 1) % 100 == 0:
            log(f"recovery: step {step + 1}/{steps}, distillation loss {loss.item():.4f}")
    student.eval()
    after = float(F.mse_loss(_logits(student, check), check_teacher))
    kept = after < before
    if not kept:  # e.g. least squares already matched the teacher: Adam's steps only added noise
        student.load_state_dict(start)
    log(f"recovery: {steps} distillation steps on {len(images)} images, logit MSE to the FP32 model on "
        f"{len(check)} {'of them' if check is images else 'other images'} {before:.4f} → {after:.4f}"
        + ("" if kept else " (worse: the un-distilled weights are kept)"))
    return {"steps": steps, "images": len(images), "check_images": len(check), "mse_before": before,
            "mse_after": after, "kept": kept}
