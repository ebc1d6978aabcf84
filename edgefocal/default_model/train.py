"""Train the embedded default FocalNet on Fashion-MNIST (seeded; reproduces focalnet_fmnist.safetensors).

    python -m edgefocal.default_model.train [--epochs 10] [--threads 1] [--out DIR]

Writes focalnet_fmnist.safetensors and metrics.json (test top-1 on the full 10k test split)."""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgefocal.data import fashion_mnist, preprocess
from edgefocal.models import DEFAULT_DIR, build_default_architecture


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and ±2 px shift: enough to train a small FocalNet without overfitting."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
    dx, dy = (int(v) for v in torch.randint(0, 5, (2,), generator=gen))
    return padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            correct += int((model(torch.from_numpy(x[i : i + batch])).argmax(1).numpy() == y[i : i + batch]).sum())
    return correct / len(x)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; the default 1 makes the result bit-reproducible on any machine")
    p.add_argument("--out", type=Path, default=DEFAULT_DIR)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = build_default_architecture()
    cfg = {k: model.pretrained_cfg[k] for k in ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")}
    train, test = fashion_mnist("train"), fashion_mnist("test")
    xtr = torch.from_numpy(preprocess(train, np.arange(len(train)), cfg))
    ytr = torch.from_numpy(train.labels)
    xte = preprocess(test, np.arange(len(test)), cfg)

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps = args.epochs * math.ceil(len(xtr) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(order), args.batch):
            b = order[i : i + args.batch]
            loss = F.cross_entropy(model(augment(xtr[b], gen)), ytr[b], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = evaluate(model, xte, test.labels)
        print(f"epoch {epoch + 1}/{args.epochs} loss {loss.item():.3f} test top-1 {acc:.4f} ({time.time() - start:.0f}s)")

    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out / "focalnet_fmnist.safetensors"))
    metrics = {"test_top1": acc, "epochs": args.epochs, "seed": args.seed, "threads": args.threads,
               "train_seconds": round(time.time() - start)}
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
