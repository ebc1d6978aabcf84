"""Staged outputs under what CI does to a job: SIGTERM at several points, SIGKILL, two builds at once,
and readers that must never find the output missing. The killed writer is a real subprocess."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import edgefocal.outputs as outputs
from edgefocal.errors import BadInput
from edgefocal.outputs import StagedOutput

REPO = Path(__file__).resolve().parent.parent

# Writes 20 files into a StagedOutput, one every 50 ms, printing a marker after each, then commits.
# EF_SLOW_SWAP makes the swap itself take 1 s, so a signal can be sent while it happens.
WRITER = """
import os, sys, time
from edgefocal.outputs import StagedOutput
import edgefocal.outputs as outputs
from edgefocal.signals import Terminated, sigterm_raises
if os.environ.get("EF_SLOW_SWAP"):
    real = outputs.exchange
    def slow(a, b):
        print("swapping", flush=True); time.sleep(1.0); return real(a, b)
    outputs.exchange = slow
try:
    with sigterm_raises():
        with StagedOutput(sys.argv[1]) as staged:
            print("staging", staged.path, flush=True)
            for i in range(20):
                (staged.path / f"new{i}.bin").write_bytes(os.urandom(4096))
                print(f"wrote {i}", flush=True)
                time.sleep(0.05)
            staged.commit()
            print("committed", flush=True)
except Terminated:
    sys.exit(143)
"""


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def previous(tmp_path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"previous": true}\n')
    (out / "sub").mkdir()
    (out / "sub" / "model.onnx").write_bytes(os.urandom(10000))
    return out


def start_writer(out: Path, tmp_path: Path, **env) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env})


def wait_for(proc: subprocess.Popen, marker: str) -> None:
    for line in proc.stdout:
        if line.strip() == marker or line.startswith(marker):
            return
    raise AssertionError(f"the writer ended before printing {marker!r} (rc {proc.wait()})")


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.mark.parametrize("marker", ["staging", "wrote 0", "wrote 9", "wrote 19"])
def test_sigterm_at_any_point_exits_143_and_leaves_the_previous_output(previous, tmp_path, marker):
    before = tree_digest(previous)
    proc = start_writer(previous, tmp_path)
    wait_for(proc, marker)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert tree_digest(previous) == before
    assert leftovers(previous) == []  # no staging directory, no lock file


def test_sigterm_during_the_swap_leaves_one_complete_output(previous, tmp_path):
    """The swap is held together: the signal lands after it, the new output is whole, nothing is left."""
    proc = start_writer(previous, tmp_path, EF_SLOW_SWAP="1")
    wait_for(proc, "swapping")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert sorted(tree_digest(previous)) == sorted(f"new{i}.bin" for i in range(20))
    assert leftovers(previous) == []


def test_sigkill_leaves_a_stale_staging_dir_that_the_next_build_removes(previous, tmp_path):
    before = tree_digest(previous)
    proc = start_writer(previous, tmp_path)
    wait_for(proc, "wrote 5")
    proc.kill()
    proc.wait(timeout=30)
    assert tree_digest(previous) == before
    stale = [n for n in leftovers(previous) if ".staging-" in n]
    assert len(stale) == 1 and f".staging-{proc.pid}-" in stale[0]  # the owner's pid is in the name
    with StagedOutput(previous) as staged:  # the dead owner's lock is gone with it; the dir is stale
        assert [n for n in leftovers(previous) if ".staging-" in n] == [staged.path.name]
    assert leftovers(previous) == []


def test_a_second_build_into_the_same_output_fails_at_once(previous, tmp_path):
    proc = start_writer(previous, tmp_path)
    wait_for(proc, "wrote 0")
    started = time.monotonic()
    with pytest.raises(BadInput, match=rf"another build \(pid {proc.pid}\) is writing .*out right now"):
        StagedOutput(previous)
    assert time.monotonic() - started < 1.0
    assert proc.wait(timeout=30) == 0  # the first build is not disturbed
    assert sorted(tree_digest(previous)) == sorted(f"new{i}.bin" for i in range(20))


def test_the_output_directory_never_goes_missing_while_replaced(previous):
    """A reader polling the output during 30 replacements always finds it (renameat2 RENAME_EXCHANGE)."""
    if not outputs.exchange(previous, previous):  # probes the syscall; swapping a path with itself is a no-op
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available on this OS/filesystem")
    missing, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            if not os.path.isdir(previous):
                missing.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(30):
            with StagedOutput(previous) as staged:
                (staged.path / "n").write_text(str(i))
                staged.commit()
    finally:
        stop.set()
        watcher.join()
    assert missing == [] and (previous / "n").read_text() == "29" and leftovers(previous) == []


def test_fallback_without_exchange_still_replaces_and_cleans_up(previous, monkeypatch):
    monkeypatch.setattr(outputs, "exchange", lambda a, b: False)
    with StagedOutput(previous) as staged:
        (staged.path / "x").write_text("new")
        staged.commit()
    assert tree_digest(previous).keys() == {"x"} and leftovers(previous) == []


def test_failure_inside_discards_staging_and_keeps_previous(previous):
    before = tree_digest(previous)
    with pytest.raises(RuntimeError):
        with StagedOutput(previous) as staged:
            (staged.path / "half").write_text("x")
            raise RuntimeError("a stage failed")
    assert tree_digest(previous) == before and leftovers(previous) == []
