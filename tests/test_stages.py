"""StageMeter: each stage's wall seconds, and the peak RSS of the whole process tree (the build and the
children it starts), checked against a child's own getrusage figure."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from edgefocal.stages import MIB, StageMeter, _floor, rusage_peaks, tree_and_root_rss, tree_rss

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="getrusage is POSIX")


def allocating_child(mib: int, hold_s: float) -> float:
    """Run a python that writes `mib` MiB, holds them `hold_s` s and prints its own peak RSS (ru_maxrss, MiB);
    forked by a small shell, so the figure is its own and not the test process's (Linux carries ru_maxrss
    across execve; verify/serving.py fresh_command)."""
    code = (f"import resource, time; x = b'x' * ({mib} * 2 ** 20); time.sleep({hold_s}); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2 ** 20 if __import__('sys').platform "
            "== 'darwin' else 1024))")
    proc = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=120, check=True)
    return float(proc.stdout)


def by_name(meter: StageMeter) -> dict[str, dict]:
    return {s["name"]: s for s in meter.to_dict()["stages"]}


def test_the_tree_peak_sees_a_child_allocating_300_mb():
    before = tree_rss(psutil.Process()) / MIB
    with StageMeter() as meter:
        with meter.stage("idle"):
            time.sleep(0.3)
        with meter.stage("child"):
            child = allocating_child(300, hold_s=1.0)  # five samples while it holds its memory
    stages, whole = by_name(meter), meter.to_dict()
    assert child > 300
    # the sum of this process and the child, not either alone: the test process is hundreds of MB itself
    assert stages["child"]["peak_rss_mb"] >= 0.95 * (before + child)
    assert stages["idle"]["peak_rss_mb"] < stages["child"]["peak_rss_mb"] - 250
    assert whole["peak_rss_mb"] == pytest.approx(max(s["peak_rss_mb"] for s in stages.values()), rel=0.02)


def test_the_kernel_floor_catches_a_spike_between_samples():
    """With the sampler asleep through the stage, the child's whole life falls between two samples: only
    getrusage's high-water mark of the reaped child can show it. The child must rise above this process's own
    mark and above every child this test process reaped before (the worker ran other tests' children), or
    the kernel's marks do not move."""
    marks_mib = max(rusage_peaks()) / MIB
    with StageMeter(interval=600) as meter:
        with meter.stage("spike"):
            child = allocating_child(max(300, int(marks_mib) + 150), hold_s=0)
    assert by_name(meter)["spike"]["peak_rss_mb"] >= 0.99 * child
    assert meter.to_dict()["peak_rss_mb"] >= 0.99 * child


def test_stage_seconds_add_up_to_the_build():
    with StageMeter() as meter:
        for name, wait in (("load", 0.2), ("export", 0.1), ("write", 0.3)):
            with meter.stage(name):
                time.sleep(wait)
    d = meter.to_dict()
    assert [s["name"] for s in d["stages"]] == ["load", "export", "write"]
    assert [s["seconds"] for s in d["stages"]] == pytest.approx([0.2, 0.1, 0.3], abs=0.15)
    assert sum(s["seconds"] for s in d["stages"]) == pytest.approx(d["seconds"], abs=0.1)
    assert all(s["peak_rss_mb"] > 0 and "running" not in s for s in d["stages"])


def test_the_stage_a_report_is_written_in_shows_its_figures_so_far():
    with StageMeter() as meter:
        with meter.stage("write"):
            time.sleep(0.1)
            d = meter.to_dict()
    assert d["stages"] == [{"name": "write", "seconds": pytest.approx(0.1, abs=0.1),
                            "peak_rss_mb": pytest.approx(d["peak_rss_mb"], rel=0.1), "running": True}]
    assert "running" not in meter.to_dict()["stages"][0]


def test_a_stage_that_raises_is_still_recorded():
    with StageMeter() as meter:
        with pytest.raises(ValueError), meter.stage("export"):
            raise ValueError("boom")
        with meter.stage("write"):
            pass
    assert [s["name"] for s in meter.to_dict()["stages"]] == ["export", "write"]


def test_stages_do_not_nest_and_need_a_running_meter():
    meter = StageMeter()
    with pytest.raises(RuntimeError, match="not running"), meter.stage("load"):
        pass
    assert meter.to_dict() == {"stages": [], "peak_rss_mb": None, "seconds": None}
    with meter:
        with meter.stage("prune"), pytest.raises(RuntimeError, match="do not nest"), meter.stage("export"):
            pass
    with pytest.raises(RuntimeError, match="already been started"):
        meter.start()


def test_the_sampler_stops_with_the_meter():
    with StageMeter(interval=0.01) as meter:
        time.sleep(0.05)
        assert any(t.name == "edgefocal-stage-meter" for t in threading.enumerate())
    assert not any(t.name == "edgefocal-stage-meter" for t in threading.enumerate())
    meter.stop()  # idempotent


def test_the_sampler_backs_off_to_stay_cheap():
    """Asked to sample every 1 ms (most of a core: a sample takes milliseconds), the sampler stretches its
    interval to keep under 1 % of a core; its thread's CPU time is read from the kernel (psutil)."""
    with StageMeter(interval=0.001) as meter:
        time.sleep(1.5)
        thread = next(t for t in threading.enumerate() if t.name == "edgefocal-stage-meter")
        cpu = next(t.user_time + t.system_time for t in psutil.Process().threads() if t.id == thread.native_id)
    assert cpu < 0.1, cpu  # unthrottled it would be near 1 s; throttled, about 0.015 s (0.01 s ticks)
    assert meter.to_dict()["peak_rss_mb"] > 0


def test_the_floor_counts_only_marks_reached_during_the_span():
    mb = 2 ** 20
    assert _floor((500 * mb, 0), (500 * mb, 0)) == 0  # nothing rose: the mark is from before
    assert _floor((500 * mb, 0), (800 * mb, 0)) == 800 * mb  # this process rose
    assert _floor((800 * mb, 0), (800 * mb, 900 * mb)) == 900 * mb  # a reaped child above this process's mark
    # at or below this process's own mark, a child's may be this process's, inherited through execve
    assert _floor((800 * mb, 0), (800 * mb, 800 * mb)) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_not_yet_execd_counts_only_its_own_pages():
    """OpenVINO's telemetry forks the build for every event: the fork shares every page with the build until it
    writes one, so the tree's sum must not count the build twice (it did: 2,547 to 5,239 MB in one stage)."""
    held = np.ones(300 * MIB, np.uint8)  # resident in this process, and so in the fork
    child = os.fork()
    if child == 0:  # the fork: sleep without writing, then leave without running Python's exit handlers
        time.sleep(3)
        os._exit(0)
    try:
        time.sleep(0.5)
        me = psutil.Process()
        assert any(c.pid == child for c in me.children())
        total, own = tree_and_root_rss(me)
        assert own > held.nbytes and total < own + 100 * MIB
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
