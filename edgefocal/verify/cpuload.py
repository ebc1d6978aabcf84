"""CPU time that *other* processes took while we timed a round.

Paired ratios cancel a slow spell only when it slows every runner alike; a second process busy on the
cores does not (torch's thread pool suffers far more than OpenVINO's), and a constant load leaves no
drift to see. So each round measures the load directly: the machine's busy time from /proc/stat minus
this process's own CPU time, as a share of the machine. Linux only; elsewhere the probe reports None
and stability rests on the spread and drift of the rounds alone."""
from __future__ import annotations

import os
import time
from pathlib import Path

_STAT = Path("/proc/stat")


def _our_cpus() -> set[int] | None:
    """The CPUs this process may run on (a pinned CI job or container sees fewer than the machine has)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _machine_busy() -> tuple[float, int] | None:
    """(busy CPU seconds since boot over the CPUs we may run on, how many), or None without /proc/stat.

    Only our CPUs count: two busy processes pinned beside us on 2 of 16 cores are a full contention,
    not the 12 % of the machine they would be on average."""
    try:
        lines = _STAT.read_text().splitlines()
    except OSError:
        return None
    mine = _our_cpus()
    busy, cpus = 0, 0
    for line in lines:
        if not (line.startswith("cpu") and line[3:4].isdigit()):
            continue
        name, *values = line.split()
        if mine is not None and int(name[3:]) not in mine:
            continue
        fields = [int(v) for v in values]
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        busy += fields[0] + fields[1] + fields[2] + sum(fields[5:8])
        cpus += 1
    if cpus == 0:
        return None
    return busy / os.sysconf("SC_CLK_TCK"), cpus


class ForeignLoad:
    """`start()` then `stop()` around a round: the share of the machine's CPU (0..1) that other
    processes used in between. /proc/stat counts in ticks (10 ms), so a short round reads coarsely;
    rounds of a few hundred ms read within a few percent."""

    def __init__(self):
        self._start: tuple[float, float, float] | None = None

    @property
    def available(self) -> bool:
        return _machine_busy() is not None

    def start(self) -> None:
        busy = _machine_busy()
        self._start = None if busy is None else (time.perf_counter(), busy[0], time.process_time())

    def stop(self) -> float | None:
        busy = _machine_busy()
        if self._start is None or busy is None:
            return None
        wall0, busy0, own0 = self._start
        wall = time.perf_counter() - wall0
        if wall <= 0:
            return None
        foreign = (busy[0] - busy0) - (time.process_time() - own0)
        return min(1.0, max(0.0, foreign / (wall * busy[1])))
