"""The foreign-load probe on this machine: busy neighbours on our CPUs are seen as such."""
import os
import time

import pytest

from edgefocal.verify.cpuload import ForeignLoad
from benchmarks.loadgen import cpu_burners

pytestmark = pytest.mark.skipif(not ForeignLoad().available, reason="/proc/stat is Linux-only")


def probe(seconds: float, work=None) -> float:
    f = ForeignLoad()
    f.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if work:
            work()
        else:
            time.sleep(0.01)
    return f.stop()


def test_neighbours_on_our_cpus_are_seen_while_we_work():
    with cpu_burners(len(os.sched_getaffinity(0)), 10):
        time.sleep(0.3)
        busy = probe(1.0, work=lambda: sum(range(10000)))  # our own spinning is subtracted, theirs is not
    assert 0.5 <= busy <= 1.0  # as many burners as our CPUs: they hold at least half of each, sharing with us
