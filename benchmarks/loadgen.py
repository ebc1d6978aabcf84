"""A bounded CPU load, to check that latency gates do not decide on noise (tests and
benchmarks/latency_stability.py), and to let a user see how their runner behaves with a busy neighbour.

Each burner is a separate process spinning a Python loop that ends by itself after `seconds`, so the
load stops even if the process that started it is killed before it can clean up."""
from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager

_SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


@contextmanager
def cpu_burners(processes: int, seconds: float):
    """`processes` busy loops for at most `seconds`; stopped (terminate, then kill) on leaving."""
    if processes < 0 or seconds <= 0:
        raise ValueError("cpu_burners needs processes >= 0 and seconds > 0")
    procs = [subprocess.Popen([sys.executable, "-c", _SPIN, str(seconds)]) for _ in range(processes)]
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
