"""A report.json as the pipeline writes it (JSON round trip: batch keys are strings), with the fields
issue 9 adds: eval fingerprint, machine class, per-round latency and stability, and the schema version
(2: rows written from core.Row). Shared by the tests of baseline, junit, summary, report_html and matrix.
`loaded` gives a report as a build holds it and baseline.load_report reads it: rows as core.Row."""
from __future__ import annotations

import copy
import json

import numpy as np

MACHINE = {"system": "Linux", "machine": "x86_64", "cpu": "Intel Xeon", "cpu_count": 2, "python": "3.11.7",
           "gpu": None, "class": "Linux | x86_64 | Intel Xeon | 2 cpus | no gpu"}


def _latency(p50: float, ref_p50: float, seed: int, stable: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    samples = {b: list(np.round(p50 * b ** 0.8 * (1 + 0.03 * rng.standard_normal(20)), 4)) for b in (1, 8)}
    speed = {b: ref_p50 / p50 for b in (1, 8)}
    stab = {b: {"stable": stable, "reason": "" if stable else "4 of 5 rounds ran while other processes used up to 90% of the CPU",
                "speedup": speed[b], "speedup_low": speed[b] * 0.97, "speedup_high": speed[b] * 1.03,
                "confidence": 0.9375, "spread": 0.06, "reference_drift": 0.04, "foreign_load": 0.02,
                "rounds_used": 5, "rounds_measured": 5, "rounds_loaded": 0} for b in (1, 8)}
    return {
        "latency_ms": {b: {"p50": float(np.median(s)), "p90": float(np.percentile(s, 90)),
                           "p99": float(np.percentile(s, 99)), "mean": float(np.mean(s))} for b, s in samples.items()},
        "throughput": {b: b * 1e3 / float(np.median(s)) for b, s in samples.items()},
        "speedup_vs_reference": speed,
        "speedup_interval": {b: [st["speedup_low"], st["speedup_high"]] for b, st in stab.items()},
        "latency_stability": stab,
        "latency_samples_ms": samples,
        "latency_rounds_ms": {b: s[:5] for b, s in samples.items()},
    }


def make_report(model: str = "edgefocal-fmnist", stable: bool = True) -> dict:
    """Two requested INT8 artifacts beside the FP32 reference and an FP32 IR."""
    ref = {"label": "torch fp32 (reference)", "target": "torch", "precision": "fp32", "requested": False,
           "device": "cpu", "top1": 0.899, "top1_drop": 0.0, "agreement": 1.0, "cosine": 1.0, **_latency(2.0, 2.0, 0)}
    rows = [ref]
    for label, target, top1, agree, p50, size, seed in (
            ("openvino fp32", "openvino", 0.899, 1.0, 1.6, 5_900_000, 1),
            ("openvino int8", "openvino", 0.8989, 0.9911, 0.9, 1_700_000, 2),
            ("onnxruntime int8 (U8S8 Q/DQ)", "onnxruntime", 0.8984, 0.9927, 1.1, 1_650_000, 3)):
        rows.append({"label": label, "target": target, "precision": label.split()[1], "requested": "int8" in label,
                     "path": f"{target}/{label.split()[1]}.bin", "size_bytes": size, "skipped": None,
                     "device": "cpu", "top1": top1,
                     "top1_drop": (0.899 - top1) * 100, "agreement": agree, "cosine": 0.999,
                     **_latency(p50, 2.0, seed, stable)})
    report = {
        "schema": 2,
        "model": {"name": model, "checkpoint": None, "checkpoint_sha256": "a" * 64, "num_classes": 10,
                  "input_size": [1, 32, 32]},
        "reference": {"device": "cpu", "gpu": False},
        "eval": {"name": "fashion-mnist:test", "count": 10000, "fingerprint": "e" * 64},
        "calibration": {"name": "fashion-mnist:train", "count": 300, "fingerprint": "c" * 64},
        "machine": dict(MACHINE),
        "bench": {"batch_sizes": [1, 8], "warmup": 10, "iterations": 50, "rounds": 5, "threads": None, "threads_used": 2},
        "rows": rows,
        "gates": [],
        "seconds": 42.0,
    }
    return json.loads(json.dumps(report))


def schema1_report(**kwargs) -> dict:
    """A report.json of before the schema key (schema 1): the same rows, no "schema", and
    artifact rows as the dict-building verify wrote them (facts such as a backend's `ov_version` flat)."""
    report = make_report(**kwargs)
    del report["schema"]
    for row in report["rows"]:
        if row["target"] == "openvino":
            row["ov_version"] = "2024.6.0"  # a backend fact: unknown to Row, kept in Row.facts
    return report


def loaded(report: dict) -> dict:
    """The report with its rows as core.Row, as a build holds it in memory and load_report reads it."""
    from edgefocal.baseline import with_rows

    return with_rows(report)


def with_serving(report: dict, scale: dict[str, float] | None = None) -> dict:
    """The report as schema 3 writes it: serving figures (verify/serving.py) on every row, memory scaled per
    label by `scale`."""
    report["schema"] = 3
    for r in report["rows"]:
        k = (scale or {}).get(r["label"], 1.0)
        ref = r["target"] == "torch"
        mem = {"1": (400.0 if ref else 150.0) * k, "8": (420.0 if ref else 170.0) * k}
        cold = 2000.0 if ref else 200.0
        r.update(cold_start_ms=cold, first_inference_ms=3.0, serving_memory_mb=mem,
                 cold_start_runs_ms=[cold * 0.95, cold, cold * 1.05],
                 serving_memory_runs_mb={b: [v * 0.995, v, v * 1.005] for b, v in mem.items()},
                 consistency={"consistent": True, "images": 10000, "mismatches": 0, "max_logit_gap": 0.0,
                              "repeatable": True, "batch": 8})
    return report


def edited(report: dict, label: str, **changes) -> dict:
    out = copy.deepcopy(report)
    row = next(r for r in out["rows"] if r["label"] == label)
    row.update(changes)
    return out


#: StageMeter.to_dict() of a build whose report was written in its last stage (edgefocal/stages.py)
STAGES = {"stages": [{"name": n, "seconds": s, "peak_rss_mb": m} for n, s, m in (
    ("load", 2.1, 850.0), ("data", 3.4, 910.0), ("prune", 0.0, 910.0), ("export", 4.2, 1020.0),
    ("search", 61.0, 1830.0), ("quantize+package", 35.5, 1650.0), ("verify", 48.2, 1400.0),
    ("serving", 22.9, 2140.0))] + [{"name": "write", "seconds": 0.4, "peak_rss_mb": 1390.0, "running": True}],
    "peak_rss_mb": 2140.0, "seconds": 178.0}


def with_stages(report: dict, stages: dict = STAGES) -> dict:
    """The report with each stage's seconds and peak RSS, and the build's peak RSS (report.stage_fields)."""
    from edgefocal.report import stage_fields

    report.update(copy.deepcopy(stage_fields(stages)), seconds=stages["seconds"] + 0.4)
    return report


#: report.json's "profile" (verify/profile.py summary) of a build run with --profile: two profiled artifacts
PROFILE = {"file": "profile.json", "not_profiled": [{"label": "tensorrt int8", "reason": "edgefocal does not drive tensorrt's profiler"}],
           "artifacts": [
               {"label": "openvino int8", "artifact": "openvino/model_int8.xml", "batch": 1, "measured_ms": 0.9,
                "profiled_ms": 0.85, "attributed_share": 0.93,
                "mac_ops": {"name": "MAC ops", "ms": 0.4, "share": 0.444, "ops": 50, "macs": 4521728, "gmac_per_s": 11.3, "int8_ms": 0.38},
                "other_ops": {"name": "other ops", "ms": 0.45, "share": 0.5, "ops": 110, "macs": 0, "gmac_per_s": None, "int8_ms": 0.0},
                "by_stage": {"stem": 0.1, "stage 1": 0.2, "stage 2": 0.15, "stage 3": 0.25, "stage 4": 0.1, "head": 0.04, "other": 0.01},
                "by_part_kind": {"stem": 0.08, "norm": 0.15, "f": 0.1, "focal": 0.05, "modulation": 0.07, "h": 0.05,
                                 "proj": 0.05, "fc1": 0.1, "act": 0.04, "fc2": 0.08, "residual": 0.03, "head": 0.04, "other": 0.01}},
               {"label": "onnxruntime int8 (U8S8 Q/DQ)", "artifact": "onnxruntime/model_int8_u8s8.onnx", "batch": 1,
                "measured_ms": 1.1, "profiled_ms": 1.0, "attributed_share": 0.9,
                "mac_ops": {"name": "MAC ops", "ms": 0.35, "share": 0.318, "ops": 39, "macs": 4521728, "gmac_per_s": 12.9, "int8_ms": 0.3},
                "other_ops": {"name": "other ops", "ms": 0.65, "share": 0.59, "ops": 300, "macs": 0, "gmac_per_s": None, "int8_ms": 0.1},
                "by_stage": {"stem": 0.1, "stage 1": 0.3, "stage 2": 0.2, "stage 3": 0.3, "stage 4": 0.08, "head": 0.02},
                "by_part_kind": {"stem": 0.1, "norm": 0.2, "f": 0.1, "focal": 0.1, "focal act": 0.1, "modulation": 0.1,
                                 "h": 0.04, "proj": 0.04, "fc1": 0.06, "act": 0.06, "fc2": 0.05, "head": 0.04, "model": 0.01}}]}


def with_profile(report: dict) -> dict:
    """The report of a build run with --profile (report["profile"], pipeline.profile_stage)."""
    report["profile"] = copy.deepcopy(PROFILE)
    return report
