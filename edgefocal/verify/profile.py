"""Where an artifact's time goes: per FocalNet part and per op kind, from the runtime's own per-op profiler
(`edgefocal profile`, `build --profile`), against wall-clock time measured with the profiler off.

The backend's profiler (Backend.profiler) runs the artifact as its verifying runner does and says, per executed
op, its kernel, the precision it reads, its ms and which torch module it belongs to (naming.attribute: by its
name, an op fused into it, or the ops it feeds or is fed by). The same runner is timed beside it, run for run, so
that every share here is of the measured time, not of what the profiler happened to count: the profiler's own
total and the measured time are both reported, and what the profiler does not see (dispatch between ops, input
and output copies) counts as unattributed. Multiply-accumulates come from the artifact's graph; a part's or op
kind's MAC rate is its MACs over its measured ms."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgefocal.backends import Backend, get_backend, names
from edgefocal.core import Artifact, ExecutedOp
from edgefocal.errors import BadInput
from edgefocal.naming import OTHER, focalnet_label, part_kind, stage_of
from edgefocal.verify.cpuload import ForeignLoad

SCHEMA = 1  # profile.json's layout version
BLOCK = 5  # profiled runs, then as many timed runs, in turn


@dataclass(frozen=True)
class Share:
    """One group of executed ops (a FocalNet part, a stage, an op kind): its time, share of the measured
    time, MACs and MAC rate."""

    name: str
    ms: float
    share: float  # of the measured wall-clock time per inference (Profile.basis_ms)
    ops: int
    macs: int = 0
    int8_ms: float = 0.0  # of `ms`, in kernels that read 8-bit data

    @property
    def gmac_per_s(self) -> float | None:
        return self.macs / self.ms / 1e6 if self.macs and self.ms > 0 else None

    def to_dict(self) -> dict:
        return {"name": self.name, "ms": round(self.ms, 4), "share": round(self.share, 4), "ops": self.ops,
                "macs": self.macs, "gmac_per_s": _round(self.gmac_per_s, 2), "int8_ms": round(self.int8_ms, 4)}


@dataclass
class Profile:
    """One artifact's profile at one batch size."""

    artifact: str
    target: str
    precision: str
    batch: int
    threads: int | None
    runs: int
    ops: list[ExecutedOp]
    measured_ms: float  # median wall-clock ms per inference of the verifying runner, profiler off
    profiled_wall_ms: float  # median wall-clock ms of the profiled inferences
    label: str = ""
    samples_ms: list[float] = field(default_factory=list)  # the measured runs
    foreign_load: float | None = None  # other processes' share of the CPUs while it ran (verify/cpuload.py)

    @property
    def profiled_ms(self) -> float:
        """The profiler's own total: the sum of its ops' ms."""
        return sum(op.ms for op in self.ops)

    @property
    def basis_ms(self) -> float:
        """What every share is of: the measured time, or the profiler's total where that is larger (its
        counters then overlap or include waits: OpenVINO's, with several threads, on a loaded machine), since
        the shares of one inference's time cannot add up to more than it."""
        return max(self.measured_ms, self.profiled_ms)

    @property
    def unseen_ms(self) -> float:
        """Measured time the profiler does not see (dispatch between ops, input and output copies): unattributed."""
        return max(0.0, self.measured_ms - self.profiled_ms)

    @property
    def attributed_ms(self) -> float:
        return sum(op.ms for op in self.ops if op.module != OTHER)

    @property
    def attributed_share(self) -> float:
        """The share of the measured time the profile puts on named FocalNet parts: attributed ms over the
        measured ms; where the profiler counts more than the clock, over its own total (basis_ms)."""
        return self.attributed_ms / self.basis_ms

    def group(self, key) -> list[Share]:
        """Shares of the ops grouped by key(op), largest first."""
        groups: dict[str, list[ExecutedOp]] = {}
        for op in self.ops:
            groups.setdefault(key(op), []).append(op)
        shares = [Share(k, sum(o.ms for o in ops), sum(o.ms for o in ops) / self.basis_ms, len(ops),
                        sum(o.macs for o in ops), sum(o.ms for o in ops if o.int8)) for k, ops in groups.items()]
        return sorted(shares, key=lambda s: -s.ms)

    def by_part(self) -> list[Share]:
        """Per torch module ('layers.2.blocks.1.mlp.fc1'), OTHER for what no rule placed."""
        return self.group(lambda op: op.module)

    def by_part_kind(self) -> list[Share]:
        return self.group(lambda op: part_kind(op.module))

    def by_stage(self) -> list[Share]:
        return self.group(lambda op: stage_of(op.module))

    def by_kind(self) -> list[Share]:
        """Per op kind as executed (Convolution, Subgraph, Reorder, QLinearConv, ...)."""
        return self.group(lambda op: op.kind)

    def by_rule(self) -> list[Share]:
        """How the time was attributed: by name, by a fused op's name, by the ops fed or feeding; '' none."""
        return self.group(lambda op: op.attributed_by)

    def mac_ops(self) -> tuple[Share, Share]:
        """(the ops that carry multiply-accumulates, everything else)."""
        split = {s.name: s for s in self.group(lambda op: "MAC ops" if op.macs else "other ops")}
        return split.get("MAC ops", Share("MAC ops", 0.0, 0.0, 0)), split.get("other ops", Share("other ops", 0.0, 0.0, 0))

    def to_dict(self) -> dict:
        macs, rest = self.mac_ops()
        return {
            "artifact": self.artifact, "label": self.label, "target": self.target, "precision": self.precision,
            "batch": self.batch, "threads": self.threads, "runs": self.runs,
            "measured_ms": round(self.measured_ms, 4), "profiled_ms": round(self.profiled_ms, 4),
            "profiled_wall_ms": round(self.profiled_wall_ms, 4), "basis_ms": round(self.basis_ms, 4),
            "attributed_ms": round(self.attributed_ms, 4), "attributed_share": round(self.attributed_share, 4),
            "unattributed_ms": round(self.basis_ms - self.attributed_ms, 4), "unseen_ms": round(self.unseen_ms, 4),
            "mac_ops": macs.to_dict(), "other_ops": rest.to_dict(),
            "int8_share": round(sum(op.ms for op in self.ops if op.int8) / self.basis_ms, 4),
            "by_rule": [s.to_dict() for s in self.by_rule()],
            "by_stage": [s.to_dict() for s in self.by_stage()],
            "by_part_kind": [s.to_dict() for s in self.by_part_kind()],
            "by_part": [s.to_dict() | {"label": focalnet_label(s.name) if s.name != OTHER else OTHER}
                        for s in self.by_part()],
            "by_kind": [s.to_dict() for s in self.by_kind()],
            "measured_samples_ms": [round(v, 4) for v in self.samples_ms],
            "foreign_load": _round(self.foreign_load, 3),
            "ops": [_op_dict(op) for op in self.ops],
        }


def _op_dict(op: ExecutedOp) -> dict:
    return {"name": op.name, "module": op.module, "part": part_kind(op.module), "attributed_by": op.attributed_by,
            "kind": op.kind, "kernel": op.kernel, "precision": op.precision, "int8": op.int8,
            "ms": round(op.ms, 5), "macs": op.macs}


def _round(v: float | None, digits: int) -> float | None:
    return None if v is None else round(v, digits)


def profile(backend: Backend, artifact: Path, precision: str, x: np.ndarray, threads: int | None = None,
            runs: int = 20, warmup: int = 3, label: str = "") -> Profile:
    """Profile `artifact` on batch `x`: `runs` inferences with the profiler on and as many of the verifying
    runner with it off, after `warmup` of each, in alternating blocks of BLOCK so that the same load falls on
    both; medians over the runs. The runner's runs follow each other, as the build's benchmark times them: one
    run straight after the profiler's bookkeeping would start with the runtime's threads asleep."""
    refuse_unprofilable(backend, artifact)
    profiler = backend.profiler(Path(artifact), precision, threads)
    if profiler is None:
        raise BadInput(f"{artifact}: {backend.name} says it profiles, but gave no profiler",
                       hint="report this as an edgefocal bug")
    measured: list[float] = []
    load = ForeignLoad()
    with profiler, backend.runner(Path(artifact), precision, threads) as runner:
        for _ in range(warmup):
            profiler.infer(x)
        runner.timed_infer(x, warmup)
        load.start()
        for done in range(0, runs, BLOCK):
            for _ in range(min(BLOCK, runs - done)):
                profiler.infer(x)
            measured += runner.timed_infer(x, min(BLOCK, runs - done))
        foreign = load.stop()
        ops = profiler.ops(skip=warmup)
        wall = profiler.wall_ms[warmup:]
    return Profile(str(artifact), backend.name, precision, int(x.shape[0]), threads, runs, ops,
                   float(np.median(measured)), float(np.median(wall)), label or f"{backend.name} {precision}",
                   measured, foreign)


def refuse_unprofilable(backend: Backend, artifact: Path) -> None:
    """A one-line BadInput for an artifact whose runtime edgefocal cannot profile here (a Core ML package, a
    TensorRT engine: their own profilers, on their own devices)."""
    if not backend.profiles_ops:
        raise BadInput(f"{artifact}: profiling a {backend.name} artifact needs {backend.name}'s own profiler, "
                       "which edgefocal does not drive", hint=cannot_profile_hint(backend))


def document(profiles: list[Profile]) -> dict:
    """profile.json: one entry per profiled artifact."""
    return {"schema": SCHEMA, "profiles": [p.to_dict() for p in profiles]}


def profiling_targets() -> list[str]:
    """The backends whose artifacts can be profiled here."""
    out = []
    for name in names():
        try:
            if get_backend(name).profiles_ops:
                out.append(name)
        except ImportError:
            continue
    return out


def cannot_profile_hint(backend: Backend) -> str:
    return (f"profile it with {backend.name}'s own tools where it runs, or profile one of the build's "
            f"{' or '.join(profiling_targets())} artifacts (edgefocal inspect lists them)")


def text(p: Profile, top: int = 8) -> list[str]:
    """A short table for a terminal: the totals, the costliest parts, op kinds and the MAC split."""
    macs, rest = p.mac_ops()
    load = "" if p.foreign_load is None else f"; other processes took {p.foreign_load:.0%} of the CPUs meanwhile"
    lines = [f"{p.label} ({p.artifact}), batch {p.batch}, {p.threads or 'all'} threads, {p.runs} runs{load}",
             f"measured {p.measured_ms:.3f} ms per inference (profiler off); profiler total {p.profiled_ms:.3f} ms "
             f"(profiled runs {p.profiled_wall_ms:.3f} ms wall)",
             f"attributed to named FocalNet parts: {p.attributed_ms:.3f} ms = {p.attributed_share:.1%} of "
             + ("measured" if p.basis_ms == p.measured_ms else "the profiler's total, which exceeds the measured time")
             + f" ({', '.join(_rule_text(s) for s in p.by_rule())}; unseen by the profiler {p.unseen_ms:.3f})",
             f"MAC ops {macs.share:.1%} ({macs.ms:.3f} ms, {macs.macs / 1e9:.3f} GMACs, "
             f"{macs.gmac_per_s or 0:.1f} GMAC/s); other ops {rest.share:.1%} ({rest.ms:.3f} ms)", ""]
    lines += _table("part", [(focalnet_label(s.name) if s.name != OTHER else OTHER, s) for s in p.by_part()[:top]])
    lines += [""] + _table("op kind", [(s.name, s) for s in p.by_kind()[:top]])
    return lines


def _rule_text(s: Share) -> str:
    return f"{s.name or 'unattributed'} {s.ms:.3f}"


def _table(head: str, rows: list[tuple[str, Share]]) -> list[str]:
    width = max([len(head)] + [len(n) for n, _ in rows])
    out = [f"{head:<{width}}  {'ms':>8}  {'share':>6}  {'int8':>6}  {'GMAC/s':>7}"]
    for name, s in rows:
        rate = "" if s.gmac_per_s is None else f"{s.gmac_per_s:.1f}"
        out.append(f"{name:<{width}}  {s.ms:>8.3f}  {s.share:>6.1%}  {s.int8_ms / s.ms if s.ms else 0:>6.0%}  {rate:>7}")
    return out


def profile_artifacts(artifacts: list[Artifact], x: np.ndarray, threads: int | None, workdir: Path,
                      log=print) -> tuple[list[Profile], list[dict]]:
    """`build --profile`: every requested artifact that runs here, profiled on batch `x`; (profiles, the
    requested artifacts not profiled and why). Artifact paths are relative to the build's output."""
    done, skipped = [], []
    for a in [a for a in artifacts if a.requested]:
        backend = get_backend(a.target)
        if a.skipped or a.make_runner is None or not backend.profiles_ops:
            why = a.skipped or f"edgefocal does not drive {backend.name}'s profiler"
            skipped.append({"label": a.label, "reason": why})
            log(f"profile: {a.label} not profiled: {why}")
            continue
        started = time.perf_counter()
        p = profile(backend, a.path, a.precision, x, threads, label=a.label)
        p.artifact = str(Path(a.path).relative_to(workdir))
        log(f"profile: {a.label} {p.measured_ms:.2f} ms at batch {p.batch}, {p.attributed_share:.1%} on named "
            f"FocalNet parts, MAC ops {p.mac_ops()[0].share:.1%} ({time.perf_counter() - started:.0f} s)")
        done.append(p)
    return done, skipped


def summary(profiles: list[Profile], skipped: list[dict], file: str = "profile.json") -> dict:
    """report.json's "profile": per artifact the totals, the time per stage and part kind, MAC ops against the
    rest (report.md and report.html read it; `file` has every op)."""
    def one(p: Profile) -> dict:
        macs, rest = p.mac_ops()
        return {"label": p.label, "artifact": p.artifact, "batch": p.batch, "measured_ms": round(p.measured_ms, 4),
                "profiled_ms": round(p.profiled_ms, 4), "attributed_share": round(p.attributed_share, 4),
                "foreign_load": _round(p.foreign_load, 3), "mac_ops": macs.to_dict(), "other_ops": rest.to_dict(),
                "by_stage": {s.name: round(s.ms, 4) for s in p.by_stage()},
                "by_part_kind": {s.name: round(s.ms, 4) for s in p.by_part_kind()}}

    return {"file": file, "artifacts": [one(p) for p in profiles], "not_profiled": skipped}
