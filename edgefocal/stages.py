"""Each build stage's wall time and peak resident memory, and the whole build's: report.json's "stages" and
"peak_rss_mb", report.md's and report.html's Stages section.

    with StageMeter() as meter:
        with meter.stage("load"):
            ...
        report = assemble(..., stages=meter.to_dict())

The memory figure is the largest resident set (RSS) of the build's process tree seen during a stage: the build
process plus every process it started and has not yet reaped (serving children, trtexec, a compiler), summed,
in MiB (2**20 bytes, as the serving figures are). Two sources; the larger stands:

- sampling: a daemon thread sums the RSS of the process and all its descendants (psutil) every `interval`
  seconds, and the meter samples once more as each stage begins and ends;
- getrusage's ru_maxrss, the kernel's exact high-water mark, of this process (RUSAGE_SELF) and of the
  largest reaped descendant (RUSAGE_CHILDREN), counted for a stage only where it rose during that stage (and,
  for a descendant, only above this process's own mark: `_floor`): a floor that catches a spike between two
  samples, though of one process at a time, never of the sum.

Limits: a peak of the *sum* shorter than the interval can be missed (the floor bounds it from below by its
largest single process); RSS counts a shared page (a library) once per process that maps it, so the sum can
exceed the memory in use, except for a fork of the build that has not exec'd, whose unique pages alone count
(`tree_and_root_rss`); GPU memory is not in it; a reaped child's high-water
mark counts in the stage that reaps it, and one at or below the build process's own is not counted (a child
exec'd straight from the build, not forked by a small shell as verify/serving.py `fresh_command` does,
inherits the build's mark: Linux carries it across execve).

The sampler costs under 1 % of one core: psutil finds the children by scanning /proc, which takes longer with
more processes on the machine, so the interval grows to 100 times the last sample's CPU time when that is
longer than `interval`."""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import psutil

MIB = 2 ** 20


def tree_rss(process: psutil.Process) -> int:
    """Bytes resident in `process` and all its descendants, summed; one that exits meanwhile counts 0."""
    return tree_and_root_rss(process)[0]


def tree_and_root_rss(process: psutil.Process) -> tuple[int, int]:
    """(bytes resident in `process` and all its descendants, in `process` alone). A descendant that is a fork
    of `process` not yet exec'd (same command line) counts its unique pages only: until it writes them, its
    pages are the root's, counted already. OpenVINO's and NNCF's telemetry fork the whole build for every
    event it sends (34 forks in one 224² build), which summed the build twice at random moments."""
    try:
        own, root = process.memory_info().rss, process.cmdline()
    except psutil.Error:  # the root itself has exited
        return 0, 0
    try:
        children = process.children(recursive=True)
    except psutil.Error:
        children = []
    total = own
    for p in children:
        try:
            total += p.memory_full_info().uss if p.cmdline() == root else p.memory_info().rss
        except psutil.Error:  # exited, a zombie, or not ours to read
            pass
    return total, own


def rusage_peaks() -> tuple[int, int]:
    """(this process's, its largest reaped descendant's) peak RSS in bytes, from getrusage's ru_maxrss (KiB
    on Linux, bytes on macOS); (0, 0) where there is no getrusage."""
    try:
        import resource
    except ImportError:  # Windows
        return 0, 0
    unit = 1 if sys.platform == "darwin" else 1024
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit)


@dataclass
class Span:
    """One stage (or the whole build) as it is measured: wall time, the largest sampled tree RSS, and the
    getrusage high-water marks at its start (a floor where they rose during it)."""

    name: str
    started: float
    rusage_at_start: tuple[int, int]
    sampled: int = 0
    seconds: float | None = None  # None while it runs
    floor: int = 0

    def finish(self) -> None:
        self.seconds = time.perf_counter() - self.started
        self.floor = _floor(self.rusage_at_start, rusage_peaks())

    def peak_bytes(self) -> int:
        floor = self.floor if self.seconds is not None else _floor(self.rusage_at_start, rusage_peaks())
        return max(self.sampled, floor)

    def to_dict(self) -> dict:
        running, peak = self.seconds is None, self.peak_bytes()
        out = {"name": self.name, "seconds": round(time.perf_counter() - self.started if running else self.seconds, 2),
               "peak_rss_mb": round(peak / MIB, 1) if peak else None}
        return {**out, "running": True} if running else out


def _floor(before: tuple[int, int], after: tuple[int, int]) -> int:
    """What the getrusage high-water marks prove was resident during a span: this process's mark where it rose
    during the span; a reaped descendant's where it rose and is above this process's own (at or below it, it
    may be this process's mark, which a child exec'd without a fork in between inherits)."""
    (own_before, kids_before), (own, kids) = before, after
    return max(own if own > own_before else 0, kids if kids > kids_before and kids > own else 0)


class StageMeter:
    """Wall seconds and peak process-tree RSS per stage and for the whole build (module docstring: what the
    figure means, and its limits). Stages run one after another, never nested; the sampler runs between
    `start` and `stop` (or the `with` block)."""

    def __init__(self, interval: float = 0.2, max_cpu_share: float = 0.01):
        self.interval, self.max_cpu_share = interval, max_cpu_share
        self.stages: list[Span] = []
        self.build: Span | None = None
        self._current: Span | None = None
        self._process = psutil.Process()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "StageMeter":
        if self.build is not None:
            raise RuntimeError("this StageMeter has already been started; use a new one per build")
        self.build = Span("build", time.perf_counter(), rusage_peaks())
        self.sample()
        self._thread = threading.Thread(target=self._run, name="edgefocal-stage-meter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the sampler (it exits within one wait) and close the build's span; idempotent."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.sample()
        self.build.finish()

    def __enter__(self) -> "StageMeter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @contextmanager
    def stage(self, name: str) -> Iterator[Span]:
        """Time `name` and track the tree's peak RSS while it runs; recorded also when it raises."""
        if self._thread is None:
            raise RuntimeError(f"stage {name!r} measured by a StageMeter that is not running; "
                               "use `with StageMeter() as meter:` around the stages")
        if self._current is not None:
            raise RuntimeError(f"stage {name!r} started inside stage {self._current.name!r}; stages do not nest")
        span = Span(name, time.perf_counter(), rusage_peaks())
        with self._lock:
            self._current = span
            self.stages.append(span)
        self.sample()
        try:
            yield span
        finally:
            self.sample()
            with self._lock:
                self._current = None
            span.finish()

    def sample(self) -> float:
        """Sum the tree's RSS now into the build's and the running stage's peaks; returns its CPU seconds."""
        cpu = time.thread_time()
        rss = tree_rss(self._process)
        with self._lock:
            for span in (self.build, self._current):
                if span is not None and rss > span.sampled:
                    span.sampled = rss
        return time.thread_time() - cpu

    def _run(self) -> None:
        wait = self.interval
        while not self._stop.wait(wait):
            wait = max(self.interval, self.sample() / self.max_cpu_share)

    def to_dict(self) -> dict:
        """{"stages": [{"name", "seconds", "peak_rss_mb"}, ...], "peak_rss_mb": the build's, "seconds": the
        build's}. A stage still running (the one the report is written in) has its figures so far and
        "running": true; called before `start`, the lists are empty and the figures None."""
        if self.build is None:
            return {"stages": [], "peak_rss_mb": None, "seconds": None}
        whole = self.build.to_dict()
        return {"stages": [s.to_dict() for s in self.stages], "peak_rss_mb": whole["peak_rss_mb"],
                "seconds": whole["seconds"]}
