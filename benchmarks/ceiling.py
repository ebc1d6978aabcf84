"""How far INT8 can outrun torch FP32 eager on this CPU, whatever is done to the ops around the MACs.

Per artifact (edgefocal's OpenVINO and ONNX Runtime INT8 of focalnet_tiny_srf at 224², as peers.md builds it,
unpruned and with 30 % of its MACs pruned), in rounds that take every measurement in turn:
- measured: torch's wall-clock ms over the artifact's (its verifying runner, profiler off), as peers.md;
- MAC-only: torch's wall-clock ms over the artifact's MAC-op ms from its runtime's own profiler
  (verify/profile.py), the speedup it would have if every other op (LayerNorms, GELUs, products, reorders,
  quantize/dequantize) took no time;
- kernels: torch's own conv and matmul ms (torch.profiler, as a share of its wall time) over the same MAC-op
  ms: how much faster the runtime's INT8 kernels run the MACs than torch's FP32 ones.
A speed bar above the MAC-only figure cannot be reached on this CPU by graph rewrites: only faster MAC kernels
(the runtime's) or fewer MACs would reach it. The ratio of each round is taken from measurements a few seconds
apart, and the table gives the median and range over rounds: this shared machine moves between a fast and a
slow state every few seconds, and not every runtime slows alike in the slow one.

    python benchmarks/ceiling.py                # writes benchmarks/ceiling.md (the whole file, one run)
    python benchmarks/ceiling.py --rounds 2 --out /tmp/ceiling.md"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from common import header, write
from peers import CASES, _inputs, build_case


OUT = Path(__file__).with_suffix(".md")
SRF_CASES = [title for title, case in CASES.items() if case["overrides"].get("model.name") == "focalnet_tiny_srf"]
TARGETS = ("openvino", "onnxruntime")
# torch ops that carry the MACs (self times, so that nested calls are not counted twice)
TORCH_MAC_OPS = ("conv", "addmm", "aten::mm", "aten::bmm", "linear")


@dataclass
class Rounds:
    """Per artifact label, the ratios of every round."""

    measured: dict[str, list[float]] = field(default_factory=dict)
    mac_only: dict[str, list[float]] = field(default_factory=dict)
    kernels: dict[str, list[float]] = field(default_factory=dict)
    torch_ms: list[float] = field(default_factory=list)
    torch_mac_share: list[float] = field(default_factory=list)
    artifact_ms: dict[str, list[float]] = field(default_factory=dict)
    artifact_mac_ms: dict[str, list[float]] = field(default_factory=dict)

    def add(self, label: str, torch_ms: float, torch_mac_ms: float, artifact_ms: float, mac_ms: float) -> None:
        for table, value in ((self.measured, torch_ms / artifact_ms), (self.mac_only, torch_ms / mac_ms),
                             (self.kernels, torch_mac_ms / mac_ms), (self.artifact_ms, artifact_ms),
                             (self.artifact_mac_ms, mac_ms)):
            table.setdefault(label, []).append(value)


def torch_mac_share(model, x, runs: int = 5) -> float:
    """The share of torch's profiled CPU time spent in its conv and matmul ops."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            model(x)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    macs = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in TORCH_MAC_OPS))
    return macs / total if total else 0.0


def mac_ms(profile) -> float:
    """The artifact's MAC-op ms per inference, as a share of its measured time where the profiler counts more
    than the clock (OpenVINO's counters overlap with several threads)."""
    macs, _ = profile.mac_ops()
    return macs.ms * min(1.0, profile.measured_ms / profile.profiled_ms)


def build_artifacts(title: str, tmp: Path) -> tuple[dict[str, tuple[str, Path]], object, int]:
    """{label: (target, INT8 artifact)} of the case's build as peers.py builds it (OpenVINO and ONNX Runtime
    only), its recipe and the threads its benchmark used."""
    result, recipe, built = build_case(CASES[title], list(TARGETS), tmp / "edgefocal")
    return ({f"{title.split(' (')[0]}: {label}": found for label, found in built.items()}, recipe,
            result.report["bench"]["threads_used"])


def measure(artifacts: dict[str, tuple[str, Path]], model, x: np.ndarray, rounds: int, threads: int) -> Rounds:
    """`rounds` rounds of: torch timed, torch profiled, each artifact profiled beside its runner."""
    import torch

    from edgefocal.backends import get_backend
    from edgefocal.backends.torch import TorchRunner
    from edgefocal.verify.profile import profile

    reference = TorchRunner(model, device="cpu", threads=threads)
    reference.load()
    reference.timed_infer(x, 3)
    out = Rounds()
    for _ in range(rounds):
        torch_ms = statistics.median(reference.timed_infer(x, 10))
        share = torch_mac_share(model, torch.from_numpy(x))
        out.torch_ms.append(torch_ms)
        out.torch_mac_share.append(share)
        for label, (target, path) in artifacts.items():
            p = profile(get_backend(target), path, "int8", x, threads, runs=10)
            out.add(label, torch_ms, torch_ms * share, p.measured_ms, mac_ms(p))
    return out


def _range(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}× ({min(values):.2f}–{max(values):.2f}×)"


def table(results: Rounds) -> list[str]:
    lines = [f"torch FP32 eager: {statistics.median(results.torch_ms):.1f} ms a run (median of the rounds), "
             f"{100 * statistics.median(results.torch_mac_share):.0f} % of it in conv and matmul ops.", "",
             "| artifact | ms | MAC-op ms | measured speedup | MAC-only speedup | kernels: torch FP32 MAC ms / INT8 MAC ms |",
             "|---|---|---|---|---|---|"]
    for label in results.measured:
        lines.append(f"| {label} | {statistics.median(results.artifact_ms[label]):.2f} | "
                     f"{statistics.median(results.artifact_mac_ms[label]):.2f} | {_range(results.measured[label])} | "
                     f"{_range(results.mac_only[label])} | {_range(results.kernels[label])} |")
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    lines = header("How far INT8 can outrun torch FP32 eager on this CPU") + [
        "Speedups against the unpruned torch model, batch 1, the builds' benchmark threads; median and range over "
        f"{args.rounds} rounds. MAC-only: the speedup if every op but the MAC ops took no time.", ""]
    artifacts: dict[str, tuple[str, Path]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, title in enumerate(SRF_CASES):
            built, recipe, threads = build_artifacts(title, Path(tmp) / str(i))
            artifacts |= built
            if i == 0:
                images, _, _, model = _inputs(recipe)
        x = np.ascontiguousarray(images[:1])
        lines += table(measure(artifacts, model.eval(), x, args.rounds, threads))
    write(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
