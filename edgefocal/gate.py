"""Gates: the recipe's bounds checked against the figures of the requested artifacts."""
from __future__ import annotations

from dataclasses import dataclass

from edgefocal.recipe import Gates


@dataclass
class GateResult:
    gate: str
    artifact: str
    value: float | None
    bound: float | str
    passed: bool

    def describe(self) -> str:
        value = "missing" if self.value is None else f"{self.value:.4g}"
        return f"{self.gate} for {self.artifact}: {value} (bound {self.bound}) {'ok' if self.passed else 'FAILED'}"


def check_gates(gates: Gates, rows: list[dict]) -> list[GateResult]:
    """`rows` are report rows of the requested artifacts (top1_drop in points, agreement,
    speedup_vs_reference keyed by batch size, skipped/required)."""
    results = []
    for row in rows:
        label = row["label"]
        if row.get("skipped"):
            if row.get("required"):
                results.append(GateResult("required artifact built", label, None, row["skipped"], False))
            continue
        if gates.max_top1_drop is not None:
            v = row.get("top1_drop")
            results.append(GateResult("max_top1_drop", label, v, gates.max_top1_drop,
                                      v is not None and v <= gates.max_top1_drop))
        if gates.min_agreement is not None:
            v = row.get("agreement")
            results.append(GateResult("min_agreement", label, v, gates.min_agreement,
                                      v is not None and v >= gates.min_agreement))
        if gates.min_speedup is not None:
            speedups = row.get("speedup_vs_reference") or {}
            v = speedups[min(speedups)] if speedups else None
            results.append(GateResult("min_speedup", label, v, gates.min_speedup,
                                      v is not None and v >= gates.min_speedup))
    return results
