"""Train a timm FocalNet on Fashion-MNIST, seeded and single-threaded so the weights are bit-reproducible: the
embedded default, or any FocalNet described by a JSON config.

    python -m edgefocal.default_model.train                     # the embedded default (reproduces
                                                                # focalnet_fmnist.safetensors and metrics.json)
    python -m edgefocal.default_model.train examples/focalnet-rgb/train.json   # NAME.safetensors + NAME.json

A config holds (defaults in brackets):
    name    output stem, e.g. "focalnet_rgb"
    arch    timm FocalNet keyword arguments (what a recipe's model.arch takes); an int focal_levels or
            focal_windows applies to every stage
    data    {"source": "fashion-mnist", "input_size": [3, 32, 32], "interpolation": "bicubic", "crop_pct": 1.0,
             "crop_mode": "center", "mean": "auto" | [...], "std": "auto" | [...]}; "auto" measures the
            per-channel mean/std of the preprocessed training images
    train   {"epochs": 6, "batch": 128, "lr": 2e-3, "weight_decay": 0.05, "label_smoothing": 0.1,
             "pct_start": 0.1, "seed": 0, "shift": 2, "hflip": true, "eval_every": 1}

NAME.json holds the arch, the data config as a timm pretrained_cfg, the class names and the measured top-1 on
the full 10k test split: what a recipe's model section needs (see recipes/focalnet-rgb.yaml)."""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgefocal.data import fashion_mnist, preprocess
from edgefocal.models import DEFAULT_DIR, default_arch

DEFAULT_DATA = {"source": "fashion-mnist", "input_size": [3, 32, 32], "interpolation": "bicubic",
                "crop_pct": 1.0, "crop_mode": "center", "mean": "auto", "std": "auto"}
DEFAULT_TRAIN = {"epochs": 6, "batch": 128, "lr": 2e-3, "weight_decay": 0.05, "label_smoothing": 0.1,
                 "pct_start": 0.1, "seed": 0, "shift": 2, "hflip": True, "eval_every": 1}


def default_config() -> dict:
    """The embedded default's training config: its config.json's arch and data config, 10 epochs."""
    config = default_arch()
    data = {k: config["pretrained_cfg"][k] for k in ("input_size", "mean", "std", "interpolation", "crop_pct",
                                                     "crop_mode")}
    return {"name": "focalnet_fmnist", "arch": config["arch"], "data": data, "train": {"epochs": 10}}


def build_model(arch: dict, num_classes: int) -> torch.nn.Module:
    from timm.models.focalnet import FocalNet

    kw = dict(arch)
    stages = len(kw.get("depths", (2, 2, 6, 2)))
    for key in ("focal_levels", "focal_windows"):
        if isinstance(kw.get(key), int):
            kw[key] = (kw[key],) * stages
    kw.setdefault("num_classes", num_classes)
    return FocalNet(**kw)


def augment(x: torch.Tensor, gen: torch.Generator, shift: int = 2, hflip: bool = True) -> torch.Tensor:
    """Random horizontal flip and a ±shift px translation shared by the batch: enough to train a small
    FocalNet without overfitting."""
    if hflip:
        flip = torch.rand(x.shape[0], generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if shift:
        padded = F.pad(x, (shift,) * 4, mode="replicate")
        dx, dy = (int(v) for v in torch.randint(0, 2 * shift + 1, (2,), generator=gen))
        x = padded[:, :, dy: dy + x.shape[2], dx: dx + x.shape[3]]
    return x


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: np.ndarray, batch: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            correct += int((model(x[i: i + batch]).argmax(1).numpy() == y[i: i + batch]).sum())
    return correct / len(x)


def unnormalized(data: dict) -> dict:
    """The data config without normalization (mean 0, std 1): images as [0, 1] floats after resize and crop."""
    c = data["input_size"][0]
    return {**{k: data[k] for k in ("input_size", "interpolation", "crop_pct", "crop_mode")},
            "mean": [0.0] * c, "std": [1.0] * c}


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """In place, as torchvision's Normalize does on float32 (subtract, then divide)."""
    return x.sub_(torch.tensor(mean, dtype=torch.float32)[None, :, None, None]).div_(
        torch.tensor(std, dtype=torch.float32)[None, :, None, None])


def load_data(data: dict):
    """(x_train, y_train, x_test, y_test, data_config, class_names). Images are preprocessed unnormalized, then
    normalized, so "auto" statistics can be measured first; the tensors equal those edgefocal's own
    preprocessing gives with the resolved mean/std, bit for bit (tests/test_bring_your_own.py checks it)."""
    if data["source"] != "fashion-mnist":
        raise SystemExit(f"unsupported data source {data['source']}: only fashion-mnist")
    raw = unnormalized(data)
    train, test = fashion_mnist("train"), fashion_mnist("test")
    xtr = torch.from_numpy(preprocess(train, np.arange(len(train)), raw))
    xte = torch.from_numpy(preprocess(test, np.arange(len(test)), raw))
    mean, std = data["mean"], data["std"]
    if mean == "auto":
        mean = [round(float(v), 4) for v in xtr.double().mean((0, 2, 3))]
    if std == "auto":
        std = [round(float(v), 4) for v in xtr.double().std((0, 2, 3))]
    normalize(xtr, mean, std)
    normalize(xte, mean, std)
    cfg = dict(raw, mean=list(mean), std=list(std))
    return xtr, torch.from_numpy(train.labels), xte, test.labels, cfg, list(train.class_names)


def fit(model: torch.nn.Module, xtr, ytr, xte, yte, tr: dict) -> list[dict]:
    """AdamW with a one-cycle schedule; the test split is evaluated every `eval_every` epochs and after the
    last (evaluation draws no random numbers, so it does not change the weights)."""
    opt = torch.optim.AdamW(model.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"])
    steps = tr["epochs"] * math.ceil(len(xtr) / tr["batch"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tr["lr"], total_steps=steps, pct_start=tr["pct_start"])
    gen = torch.Generator().manual_seed(tr["seed"])
    history: list[dict] = []
    start = time.time()
    for epoch in range(tr["epochs"]):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(order), tr["batch"]):
            b = order[i: i + tr["batch"]]
            loss = F.cross_entropy(model(augment(xtr[b], gen, tr["shift"], tr["hflip"])), ytr[b],
                                   label_smoothing=tr["label_smoothing"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if epoch + 1 == tr["epochs"] or (tr["eval_every"] and (epoch + 1) % tr["eval_every"] == 0):
            acc = evaluate(model, xte, yte)
            history.append({"epoch": epoch + 1, "loss": round(loss.item(), 4), "test_top1": acc,
                            "seconds": round(time.time() - start)})
            print(f"epoch {epoch + 1}/{tr['epochs']} loss {loss.item():.3f} test top-1 {acc:.4f} "
                  f"({time.time() - start:.0f}s)", flush=True)
    return history


def train(config: dict, threads: int = 1) -> tuple[torch.nn.Module, dict]:
    """Train `config`; returns the model and its metadata (arch, pretrained_cfg, class names, test top-1)."""
    data = {**DEFAULT_DATA, **config.get("data", {})}
    tr = {**DEFAULT_TRAIN, **config.get("train", {})}
    torch.set_num_threads(threads)
    torch.manual_seed(tr["seed"])
    xtr, ytr, xte, yte, data_cfg, classes = load_data(data)
    torch.manual_seed(tr["seed"])  # the initial weights do not depend on how the data was read
    model = build_model(config["arch"], len(classes))
    start = time.time()
    history = fit(model, xtr, ytr, xte, yte, tr)
    meta = {
        "arch": {**config["arch"], "num_classes": len(classes)},
        "pretrained_cfg": {**data_cfg, "num_classes": len(classes)},
        "class_names": classes,
        "test_top1": history[-1]["test_top1"],
        "test_split": "fashion-mnist t10k (10000 images)",
        "epochs": tr["epochs"], "seed": tr["seed"], "threads": threads, "train": tr,
        "train_seconds": round(time.time() - start), "history": history,
        "params": sum(p.numel() for p in model.parameters()),
        "software": {"torch": torch.__version__, "timm": __import__("timm").__version__,
                     "python": platform.python_version()},
    }
    return model, meta


def save(model: torch.nn.Module, meta: dict, out: Path, name: str, embedded_default: bool) -> Path:
    """The embedded default keeps its file names (focalnet_fmnist.safetensors, metrics.json); a config's
    model is NAME.safetensors and NAME.json."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    if embedded_default:
        metrics = {k: meta[k] for k in ("test_top1", "epochs", "seed", "threads", "train_seconds")}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    else:
        meta = {**meta, "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()}
        (out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return weights


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", type=Path, nargs="?", help="a JSON training config (default: the embedded default)")
    p.add_argument("--epochs", type=int, help="override the config's epochs")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; the default 1 makes the result bit-reproducible on the same software")
    p.add_argument("--out", type=Path, help="output folder (default: the config's folder, or the embedded default's)")
    args = p.parse_args(argv)

    config = json.loads(args.config.read_text()) if args.config else default_config()
    if args.epochs:
        config["train"] = {**config.get("train", {}), "epochs": args.epochs}
    out = args.out or (args.config.parent if args.config else DEFAULT_DIR)
    model, meta = train(config, args.threads)
    weights = save(model, meta, out, config.get("name", "focalnet"), embedded_default=args.config is None)
    print(json.dumps({"weights": str(weights), **{k: meta[k] for k in ("test_top1", "epochs", "seed", "params")}}))


if __name__ == "__main__":
    main()
