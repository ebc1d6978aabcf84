"""Stability figures of interleaved latency, without and with an injected CPU load, on the embedded default
(torch FP32 eager as the reference, ONNX Runtime FP32 as the artifact; real runners, 2 threads).

    python benchmarks/latency_stability.py [--burners 2] [--seconds 50] [--write benchmarks/latency_stability.md]

For each batch size and load it prints what a latency gate sees: the reference's p50 and its drift across
rounds, the CPU share other processes took, the per-round speedup interval and spread, whether the
measurement counts as stable, and the verdict of a min_speedup gate far below (1.0x) and far above (30x)
the documented unloaded ratio (6.1x at batch 1, 3.0x at batch 8), next to what a gate on the pooled
ratio alone would have said. The markdown file is written whole by this script: command, date, machine
and the load before the run at its top."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
from loadgen import cpu_burners

from edgefocal.gate import speedup_gate
from edgefocal.machine import machine
from edgefocal.manifest import package_versions
from edgefocal.recipe import Gates
from edgefocal.verify.bench import benchmark, row_fields
from edgefocal.verify.cpuload import ForeignLoad
from edgefocal.verify.stability import StabilityPolicy

BOUNDS = (1.0, 30.0)
BATCHES = [1, 8]


def runners(tmp: Path) -> dict:
    import torch

    from edgefocal.export import onnx_from_torch
    from edgefocal.models import load_model
    from edgefocal.backends.onnxruntime import OnnxRuntimeRunner
    from edgefocal.backends.torch import TorchRunner

    torch.set_num_threads(2)
    loaded = load_model()
    onnx = tmp / "model.onnx"
    onnx_from_torch(loaded.model, tuple(loaded.data_config["input_size"]), onnx)
    out = {"torch fp32 (reference)": TorchRunner(loaded.model, threads=2), "onnxruntime fp32": OnnxRuntimeRunner(onnx, threads=2)}
    for r in out.values():
        r.load()
    return out, loaded.data_config["input_size"]


def rows(tag: str, res: dict) -> list[str]:
    ref, art = "torch fp32 (reference)", "onnxruntime fp32"
    fields = row_fields(res, art, ref)
    out = []
    for b in BATCHES:
        s, r = res[art][b]["stability"], res[ref][b]["stability"]
        pooled = res[ref][b]["p50"] / res[art][b]["p50"]
        row = {"label": art, "speedup_vs_reference": {b: fields["speedup_vs_reference"][b]},
               "latency_stability": {b: s}}
        gated = [speedup_gate(Gates(min_speedup=x), row).status for x in BOUNDS]
        naive = ["passed" if pooled >= x else "failed" for x in BOUNDS]
        load = "–" if s["foreign_load"] is None else f"{s['foreign_load']:.0%}"
        out.append(f"| {tag} | {b} | {res[ref][b]['p50']:.2f} | {r['reference_drift']:.0%} | {load} | "
                   f"{s['rounds_used']}/{s['rounds_measured']} ({s['rounds_loaded']} loaded) | {pooled:.2f}× | "
                   f"{s['speedup_low']:.2f}–{s['speedup_high']:.2f}× | {s['spread']:.0%} | {'yes' if s['stable'] else 'no'} | "
                   f"{' / '.join(gated)} | {' / '.join(naive)} |")
    return out


def header(args, before: float | None) -> list[str]:
    m = machine()
    pk = package_versions()
    return [
        "# Latency stability with and without an injected CPU load", "",
        f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`  ",
        f"Date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}  ",
        f"Machine: {m['cpu']} ({m['cpu_count']} cores), {m['system']} {m['machine']}, GPU: {m['gpu'] or 'none'}; "
        + ", ".join(f"{k} {v}" for k, v in pk.items() if k in ("torch", "onnxruntime", "numpy")) + "  ",
        f"Load before the run: load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}; other processes "
        f"took {'an unknown share' if before is None else f'{before:.0%}'} of the CPU over 2 s  ",
        f"Injected load: {args.burners} busy-loop processes for at most {args.seconds:.0f} s", "",
        "Runners: the embedded default (FocalNet, 1×32×32) as torch FP32 eager (the reference) and ONNX Runtime "
        "FP32, 2 threads each, timed interleaved round by round (verify/bench.py) with the recipe defaults "
        "of `gates:` (spread ≤ 20 %, reference drift ≤ 25 %, other processes ≤ 25 % of the CPU, at most "
        f"{args.max_rounds} rounds). Gate columns: min_speedup {BOUNDS[0]}× / {BOUNDS[1]}×, far below and far "
        "above the documented unloaded ratios (6.1× at batch 1, 3.0× at batch 8): the true verdicts are "
        "passed / failed.", "",
        "| load | batch | ref p50 ms | ref drift | others' CPU | rounds used | pooled ×ref | per-round ×ref | spread | "
        "stable | gate (stability) | gate on pooled ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--burners", type=int, default=2, help="busy-loop processes during the loaded run")
    p.add_argument("--seconds", type=float, default=50.0, help="the burners end by themselves after this")
    p.add_argument("--max-rounds", type=int, default=8, help="re-measure up to this many rounds")
    p.add_argument("--write", type=Path, help="write the markdown here (e.g. benchmarks/latency_stability.md)")
    args = p.parse_args()
    probe = ForeignLoad()
    probe.start()
    __import__("time").sleep(2.0)
    before = probe.stop()
    policy = StabilityPolicy(max_rounds=args.max_rounds)
    with tempfile.TemporaryDirectory() as tmp:
        rs, input_size = runners(Path(tmp))
        sample = np.random.default_rng(0).standard_normal((8, *input_size)).astype(np.float32)
        measure = lambda: benchmark(rs, sample, BATCHES, 5, 20, 5, reference="torch fp32 (reference)", policy=policy)  # noqa: E731
        lines = header(args, before) + rows("as the machine is", measure())
        with cpu_burners(args.burners, args.seconds):
            lines += rows(f"+{args.burners} burners", measure())
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
