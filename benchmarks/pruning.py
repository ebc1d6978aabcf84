"""Pruning benchmark (one run): accuracy of channel/2:4 pruning on the embedded default, and OpenVINO INT8
latency of a 30 %-MAC-pruned focalnet_tiny_srf against the unpruned one, timed side by side.

    python benchmarks/pruning.py            # writes benchmarks/pruning.md (the whole file, one run)
    python benchmarks/pruning.py --quick --out /tmp/p.md   # fewer ratios/iterations, for a smoke test

Ratios are fractions of the whole model's conv/linear MACs at its input size (edgefocal.prune.macs).
focalnet_tiny_srf has random weights (no hub here): only its latency is meaningful; it is pruned with 16
Fashion-MNIST train images resized to 224² RGB by its own timm data config, and NNCF calibrates on them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import header, write

from edgefocal.data import balanced_subset, fashion_mnist, preprocess
from edgefocal.export import onnx_from_torch
from edgefocal.models import load, load_model
from edgefocal.prune import prune_model
from edgefocal.recipe import REPO_ROOT, PruneSpec, QuantizeSpec, load_recipe

OUT = Path(__file__).with_suffix(".md")
RGB_RECIPE = REPO_ROOT / "recipes" / "focalnet-rgb.yaml"
SILENT = lambda *_: None  # noqa: E731


def top1_torch(model, images, labels, batch=500) -> float:
    hits = 0
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            hits += int((model(torch.from_numpy(images[i : i + batch])).argmax(1).numpy() == labels[i : i + batch]).sum())
    return hits / len(images)


def ov_int8(model, input_size, calibration, workdir: Path, tag: str):
    """ONNX (dynamo) → edgefocal's ov.Model (LayerNorms over channels) → its OpenVINO INT8 under the default
    precision plan."""
    import onnx

    from edgefocal.backends.openvino import ov_model_from_onnx
    from edgefocal.backends.openvino.quantize import quantize
    from edgefocal.precision.policy import plan_precision

    onnx_path = onnx_from_torch(model, input_size, workdir / f"{tag}.onnx")
    plan = plan_precision(onnx.load(str(onnx_path)))
    return quantize(ov_model_from_onnx(onnx_path), plan, calibration, QuantizeSpec())


def compile_ov(ov_model, batch: int | None = None):
    """Dynamic batch (as exported) or, with `batch`, reshaped to a static shape first (the CPU plugin picks
    faster kernels for a static batch)."""
    import openvino as ov

    if batch is not None:
        ov_model = ov_model.clone()
        ov_model.reshape([batch, *list(ov_model.inputs[0].get_partial_shape())[1:]])
    return ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": 2})


def top1_ov(compiled, images, labels, batch=100) -> float:
    req = compiled.create_infer_request()
    hits = 0
    for i in range(0, len(images), batch):
        req.infer({0: images[i : i + batch]})
        hits += int((req.get_output_tensor(0).data.argmax(1) == labels[i : i + batch]).sum())
    return hits / len(images)


def latency_side_by_side(compiled: dict, sample: np.ndarray, batches, rounds: int, iters: int, warmup: int = 5):
    """p50/p90 ms per (name, batch); the models take turns round by round so drift hits them alike.
    `compiled` maps a name to one compiled model (dynamic batch) or to {batch: compiled model}."""
    times = {(n, b): [] for n in compiled for b in batches}
    reqs = {(n, b): (c[b] if isinstance(c, dict) else c).create_infer_request() for n, c in compiled.items() for b in batches}
    for _ in range(rounds):
        for b in batches:
            x = np.ascontiguousarray(sample[:b])
            for n in compiled:
                req = reqs[(n, b)]
                for _ in range(warmup):
                    req.infer({0: x})
                for _ in range(iters):
                    t = time.perf_counter()
                    req.infer({0: x})
                    times[(n, b)].append((time.perf_counter() - t) * 1e3)
    return {k: (float(np.percentile(v, 50)), float(np.percentile(v, 90))) for k, v in times.items()}


def default_part(quick: bool, workdir: Path, lines: list[str]):
    lm = load_model()
    train, test = fashion_mnist("train"), fashion_mnist("test")
    calib = preprocess(train, balanced_subset(train.labels, 300, seed=0), lm.data_config)
    idx = np.arange(len(test)) if not quick else balanced_subset(test.labels, 2000, seed=1)
    images, labels = preprocess(test, idx, lm.data_config), test.labels[idx]
    input_size = tuple(lm.data_config["input_size"])
    ref = top1_torch(lm.model, images, labels)
    print(f"default: FP32 top-1 {ref:.4f} on {len(labels)} test images")
    lines += [f"## Embedded default ({lm.checkpoint.name}, sha256 {lm.checkpoint_sha256[:12]}), "
              f"{len(labels)} Fashion-MNIST test images, calibration 300 balanced train images", "",
              f"Unpruned FP32 (torch) top-1: **{ref * 100:.2f} %**", "",
              "### Channel pruning, FP32 torch, no retraining", "",
              "| MACs removed (requested) | MACs removed | channels removed | params | top-1 plain cut | top-1 least-squares repair | Δ repair vs plain |",
              "|---|---|---|---|---|---|---|"]
    ratios = (0.1, 0.3, 0.5) if quick else (0.1, 0.2, 0.3, 0.4, 0.5)
    pruned30 = None
    for r in ratios:
        acc = {}
        for rec in (False, True):
            res = prune_model(lm.model, calib, PruneSpec(method="channels", ratio=r, reconstruct=rec), log=SILENT)
            acc[rec] = top1_torch(res.model, images, labels)
            if rec and r == 0.3:
                pruned30 = res
        s = res.stats
        print(f"  ratio {r}: plain {acc[False]:.4f}  repaired {acc[True]:.4f}  (MACs -{s['mac_ratio_removed']:.3f})")
        lines.append(f"| {r:.0%} | {s['mac_ratio_removed']:.1%} | {s['channel_ratio_removed']:.1%} | "
                     f"{s['params_before'] / 1e6:.3f}M → {s['params_after'] / 1e6:.3f}M | {acc[False] * 100:.2f} % | "
                     f"{acc[True] * 100:.2f} % | {(acc[True] - acc[False]) * 100:+.2f} |")

    lines += ["", "### Which channels to cut (least-squares repair on)", "",
              "| MACs removed | groups pruned | top-1 |", "|---|---|---|"]
    for r, groups in ((0.15, ["mlp"]), (0.15, ["modulator", "context"]), (0.15, ["modulator"]), (0.15, ["context"]),
                      (0.3, ["mlp"]), (0.3, ["mlp", "modulator", "context"])):
        try:
            res = prune_model(lm.model, calib, PruneSpec(method="channels", ratio=r, groups=groups), log=SILENT)
            a = f"{top1_torch(res.model, images, labels) * 100:.2f} %"
        except Exception as e:  # the group may not hold that many MACs
            a = f"n/a ({str(e)[:60]})"
        print(f"  {r} {groups}: {a}")
        lines.append(f"| {r:.0%} | {', '.join(groups)} | {a} |")

    lines += ["", "### 2:4 sparsity on every block 1×1 conv (f, h, proj, fc1, fc2), FP32 torch", "",
              "| solver | top-1 | Δ vs unpruned | verifier |", "|---|---|---|---|"]
    for solver in ("sparsegpt", "wanda"):
        res = prune_model(lm.model, calib, PruneSpec(method="2:4", solver=solver), log=SILENT)
        a = top1_torch(res.model, images, labels)
        lines.append(f"| {solver} | {a * 100:.2f} % | {(a - ref) * 100:+.2f} | "
                     f"{'passes' if res.stats['sparsity_2of4'] else 'FAILS'} on {len(res.stats['pruned_modules'])} convs |")
        print(f"  2:4 {solver}: {a:.4f}")

    q_dense = compile_ov(ov_int8(lm.model, input_size, calib, workdir, "default_dense"))
    q_pruned = compile_ov(ov_int8(pruned30.model, input_size, calib, workdir, "default_pruned30"))
    p_fp32 = top1_torch(pruned30.model, images, labels)
    a_dense, a_pruned = top1_ov(q_dense, images, labels), top1_ov(q_pruned, images, labels)
    lat = latency_side_by_side({"unpruned": q_dense, "pruned": q_pruned}, images, (1, 8), 3 if quick else 5, 50 if quick else 200)
    s = pruned30.stats
    lines += ["", "### 30 % of MACs removed + INT8 (OpenVINO, NNCF on the ONNX export, 300 calibration images)", "",
              f"MACs {s['macs_before'] / 1e6:.2f}M → {s['macs_after'] / 1e6:.2f}M ({s['mac_ratio_removed']:.1%}), "
              f"channels removed {s['channel_ratio_removed']:.1%}, params {s['params_before'] / 1e6:.3f}M → "
              f"{s['params_after'] / 1e6:.3f}M. Kept channels per block (mlp / modulator / context): "
              + "; ".join(f"{n}: {v['mlp'][0]}/{v['mlp'][1]}, {v['modulator'][0]}/{v['modulator'][1]}, "
                          f"{v['context'][0]}/{v['context'][1]}" for n, v in s["blocks"].items()), "",
              "| model | top-1 | Δ vs unpruned FP32 | of which pruning | of which INT8 | p50 ms b1 | p50 ms b8 |",
              "|---|---|---|---|---|---|---|",
              f"| unpruned FP32 (torch) | {ref * 100:.2f} % | – | – | – | | |",
              f"| unpruned INT8 (OpenVINO) | {a_dense * 100:.2f} % | {(a_dense - ref) * 100:+.2f} | – | {(a_dense - ref) * 100:+.2f} | "
              f"{lat[('unpruned', 1)][0]:.3f} | {lat[('unpruned', 8)][0]:.3f} |",
              f"| 30 %-MAC pruned FP32 (torch) | {p_fp32 * 100:.2f} % | {(p_fp32 - ref) * 100:+.2f} | {(p_fp32 - ref) * 100:+.2f} | – | | |",
              f"| 30 %-MAC pruned INT8 (OpenVINO) | {a_pruned * 100:.2f} % | **{(a_pruned - ref) * 100:+.2f}** | "
              f"{(p_fp32 - ref) * 100:+.2f} | {(a_pruned - p_fp32) * 100:+.2f} | {lat[('pruned', 1)][0]:.3f} | "
              f"{lat[('pruned', 8)][0]:.3f} |", ""]
    print(f"  INT8 unpruned {a_dense:.4f} pruned {a_pruned:.4f} (FP32 pruned {p_fp32:.4f}); latency {lat}")


def agreement_torch(model, images, teacher_predictions, batch=500) -> float:
    with torch.inference_mode():
        got = np.concatenate([model(torch.from_numpy(images[i : i + batch])).argmax(1).numpy()
                              for i in range(0, len(images), batch)])
    return float(np.mean(got == teacher_predictions))


def recovery_part(title: str, lm, quick: bool, workdir: Path, lines: list[str]):
    """30 % of MACs removed from a trained model: least squares alone, then distillation (the default
    recipe's 600 steps) on the 300 calibration images or on 8000 held-out train images; agreement with the
    unpruned FP32 model of the pruned FP32 model and of its OpenVINO INT8 (default plan, no search)."""
    train, test = fashion_mnist("train"), fashion_mnist("test")
    used = balanced_subset(train.labels, 300, seed=0)
    calib = preprocess(train, used, lm.data_config)
    spare = np.setdiff1d(np.arange(len(train)), used)
    held_n, steps = (2000, 150) if quick else (8000, 600)
    held = preprocess(train, spare[balanced_subset(train.labels[spare], held_n, seed=2)], lm.data_config)
    idx = np.arange(len(test)) if not quick else balanced_subset(test.labels, 2000, seed=1)
    images, labels = preprocess(test, idx, lm.data_config), test.labels[idx]
    with torch.inference_mode():
        teacher = np.concatenate([lm.model(torch.from_numpy(images[i : i + 500])).argmax(1).numpy()
                                  for i in range(0, len(images), 500)])
    input_size = tuple(lm.data_config["input_size"])
    variants = {"least squares": (0, None), f"+ {steps} distillation steps on the 300 calibration images": (steps, None),
                f"+ {steps} distillation steps on {held_n} held-out train images": (steps, lambda n: held[:n])}
    lines += ["", f"### {title}: 30 % of MACs removed, what recovery buys (agreement with the unpruned FP32 model, "
              f"{len(labels)} test images)", "",
              f"Unpruned FP32 (torch) top-1 {np.mean(teacher == labels) * 100:.2f} %. INT8: OpenVINO, NNCF on the "
              "pruned model's ONNX export with the 300 calibration images, edgefocal's default precision plan "
              "(no mixed-precision search).", "",
              "| repair | prune time | FP32 top-1 | FP32 agreement | INT8 top-1 | INT8 agreement (total) |",
              "|---|---|---|---|---|---|"]
    for name, (recover, held_out) in variants.items():
        t = time.perf_counter()
        spec = PruneSpec(method="channels", ratio=0.3, recover_steps=recover, recover_images=held_n)
        res = prune_model(lm.model, calib, spec, log=SILENT, held_out=held_out)
        secs = time.perf_counter() - t
        q = compile_ov(ov_int8(res.model, input_size, calib, workdir, f"recovery_{len(lines)}"))
        q_pred = np.concatenate([q(images[i : i + 100])[0].argmax(1) for i in range(0, len(images), 100)])
        fp32 = agreement_torch(res.model, images, teacher)
        print(f"  {title} {name}: FP32 agreement {fp32:.4f}, INT8 {np.mean(q_pred == teacher):.4f} ({secs:.0f} s)")
        lines.append(f"| {name} | {secs:.0f} s | {top1_torch(res.model, images, labels) * 100:.2f} % | {fp32 * 100:.2f} % | "
                     f"{np.mean(q_pred == labels) * 100:.2f} % | {np.mean(q_pred == teacher) * 100:.2f} % |")
    lines.append("")


def rgb_model():
    """recipes/focalnet-rgb.yaml's FocalNet, its checkpoint found from any working directory."""
    spec = load_recipe(RGB_RECIPE).model
    return load(spec.model_copy(update={"checkpoint": REPO_ROOT / spec.checkpoint}))


SRF_STAGE_WEIGHTS = [3.0, 2.0, 1.0, 0.5]  # relative channel fraction per stage (high resolution first)


def srf_part(quick: bool, workdir: Path, lines: list[str]):
    import timm
    from timm.data import resolve_model_data_config

    torch.manual_seed(0)
    model = timm.create_model("focalnet_tiny_srf", pretrained=False).eval()
    cfg = resolve_model_data_config(model)
    train = fashion_mnist("train")
    calib = preprocess(train, balanced_subset(train.labels, 16, seed=0), cfg)
    input_size = tuple(cfg["input_size"])
    specs = {"uniform": PruneSpec(method="channels", ratio=0.3),
             "stage-weighted": PruneSpec(method="channels", ratio=0.3, stage_weights=SRF_STAGE_WEIGHTS)}
    batches = (1, 8)
    static = lambda m: {b: compile_ov(m, b) for b in batches}  # noqa: E731
    compiled = {"unpruned": static(ov_int8(model, input_size, calib, workdir, "srf_dense"))}
    stats = {}
    for name, spec in specs.items():
        t = time.perf_counter()
        res = prune_model(model, calib, spec, log=SILENT)
        stats[name] = (res.stats, time.perf_counter() - t)
        print(f"tiny_srf {name} pruned in {stats[name][1]:.0f}s: MACs -{res.stats['mac_ratio_removed']:.3f}")
        compiled[name] = static(ov_int8(res.model, input_size, calib, workdir, f"srf_{name}"))
    sample = np.concatenate([calib, calib])[:8]
    lat = latency_side_by_side(compiled, sample, batches, 3 if quick else 5, 10 if quick else 30)
    print(f"  latency {lat}")
    lines += ["## focalnet_tiny_srf (random weights, 224²), 30 % of MACs removed, OpenVINO INT8", "",
              "Pruned with 16 calibration images (Fashion-MNIST train, resized to 224² RGB by the model's timm data "
              "config; random weights make the importance scores arbitrary, only latency is asked here). All models "
              "INT8 by NNCF on the same images, reshaped to a static batch and compiled with INFERENCE_NUM_THREADS=2, "
              "timed interleaved in the same run (rounds of every model in turn). \"uniform\" removes the same channel fraction in every stage; "
              f"\"stage-weighted\" uses prune.stage_weights {SRF_STAGE_WEIGHTS} (more from the high-resolution stages, "
              "whose LayerNorm/GELU/depthwise/elementwise time the MAC count does not see).", "",
              "| model | MACs | channels removed | params | prune time | p50 ms b1 | p90 ms b1 | p50 ms b8 | p90 ms b8 | speed-up b1 | speed-up b8 |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = stats["uniform"][0]
    lines.append(f"| unpruned INT8 | {base['macs_before'] / 1e9:.3f}G | – | {base['params_before'] / 1e6:.1f}M | – | "
                 f"{lat[('unpruned', 1)][0]:.2f} | {lat[('unpruned', 1)][1]:.2f} | {lat[('unpruned', 8)][0]:.2f} | "
                 f"{lat[('unpruned', 8)][1]:.2f} | 1.00× | 1.00× |")
    for n, (s, secs) in stats.items():
        sp1 = lat[("unpruned", 1)][0] / lat[(n, 1)][0]
        sp8 = lat[("unpruned", 8)][0] / lat[(n, 8)][0]
        lines.append(f"| {n} 30 %-MAC pruned INT8 | {s['macs_after'] / 1e9:.3f}G (−{s['mac_ratio_removed']:.1%}) | "
                     f"{s['channel_ratio_removed']:.1%} | {s['params_after'] / 1e6:.1f}M | {secs:.0f} s | "
                     f"{lat[(n, 1)][0]:.2f} | {lat[(n, 1)][1]:.2f} | {lat[(n, 8)][0]:.2f} | {lat[(n, 8)][1]:.2f} | "
                     f"**{sp1:.2f}×** | {sp8:.2f}× |")
    lines.append("")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    lines = header("Pruning benchmark") + [
        "Ratios count the whole model's conv/linear MACs (torch's FlopCounterMode). The CPU is shared with "
        "other jobs: latency ratios are taken side by side, interleaved, in this run.", ""]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        srf_part(args.quick, Path(tmp), lines)
        default_part(args.quick, Path(tmp), lines)
        recovery_part("Embedded default", load_model(), args.quick, Path(tmp), lines)
        recovery_part("focalnet-rgb (recipes/focalnet-rgb.yaml)", rgb_model(), args.quick, Path(tmp), lines)
    lines.append(f"Run time {time.perf_counter() - started:.0f} s.")
    write(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
