"""SIGTERM handled like Ctrl-C, because SIGTERM is what CI sends when a job is cancelled or times out.

Python's default for SIGTERM is to die on the spot: no `finally`, no `with` exit, so a build left its
`.NAME.staging-*` directory behind. Inside `sigterm_raises()` the signal raises `Terminated` in the main
thread instead, the staging directory's context manager removes it, and the CLI maps `Terminated` to
exit 143 (128 + 15, what a shell reports for a job killed by SIGTERM); SIGINT keeps 130.

Python runs that handler only between bytecodes, so a main thread inside one runtime call (an OpenVINO
compile_model, an ONNX Runtime run: tens of seconds at 224x224) would hear the signal only when the call
returns, past CI's patience (issue 19: exit 143 within 10 s). So `sigterm_raises()` also keeps a watchdog
thread: after `GRACE_SECONDS` without the main thread unwinding, it removes what was registered with
`remove_on_forced_exit` (the staging directory, the output's lock file, a data cache elsewhere) and exits
with the signal's code, never in the middle of a `deferred_signals()` step."""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

EXIT_SIGTERM = 128 + signal.SIGTERM  # 143
EXIT_SIGINT = 128 + signal.SIGINT  # 130
# how long the main thread has to unwind by itself (the staging directory's own clean-up takes up to 2 s)
# before the watchdog ends the process. Issue 19's bar is 10 s from SIGTERM to exit, and a main thread that
# unwinds just in time still has the interpreter's teardown ahead (measured 4.5 s on a loaded 2-core machine)
GRACE_SECONDS = 3.0
_FORCED = {signal.SIGTERM: (EXIT_SIGTERM, "terminated by SIGTERM"), signal.SIGINT: (EXIT_SIGINT, "interrupted")}


class Terminated(BaseException):
    """The process received SIGTERM. A BaseException, like KeyboardInterrupt, so that `except Exception`
    in a backend does not swallow it; not a KeyboardInterrupt, so that code mapping Ctrl-C to 130 does not
    relabel it."""

    exit_code = EXIT_SIGTERM

    def __init__(self, message: str = "terminated by SIGTERM"):
        super().__init__(message)


@contextmanager
def sigterm_raises():
    """While inside, SIGTERM raises `Terminated` (once: a second SIGTERM during the clean-up is ignored so
    the clean-up can finish; SIGKILL is the way to stop it harder), and a SIGTERM or SIGINT that the main
    thread has not unwound from within `GRACE_SECONDS` ends the process (`_Watchdog`). Outside the main
    thread, where Python cannot install handlers, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum, frame):
        nonlocal fired
        if not fired:
            fired = True
            raise Terminated()

    previous = _install(signal.SIGTERM, handler)
    _handle_on_thread_stack(signal.SIGINT)  # Python's own Ctrl-C handler has the same flag
    watchdog = _Watchdog()
    try:
        yield
    except Exception as e:
        # a library's C code can catch the raised Terminated and raise its own error instead (torch's
        # loader turned it into a ValueError): after a SIGTERM, the process still ends as terminated
        if fired:
            raise Terminated() from e
        raise
    finally:
        watchdog.stop()  # unwound in time: the caller reports and exits as usual
        _install(signal.SIGTERM, previous)


@contextmanager
def deferred_signals():
    """Hold SIGTERM and SIGINT back while inside (a step that must not be cut in two, like swapping the
    output directory); a signal that arrived meanwhile is handed to the previous handler on the way out.

    Done with Python handlers, not pthread_sigmask: a process-directed signal goes to any thread that has
    it unblocked (torch, ONNX Runtime and OpenVINO start threads), and Python then runs its handler in the
    main thread whatever the main thread's mask says. The watchdog's forced exit waits for the step too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    _atomic.acquire()
    previous = {s: _install(s, lambda signum, frame: arrived.append(signum))
                for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            _install(s, handler)
        _atomic.release()
        for s in dict.fromkeys(arrived):
            _redeliver(s, previous[s])


_atomic = threading.RLock()  # held by the main thread during a deferred_signals() step
_registered: dict["remove_on_forced_exit", None] = {}  # insertion-ordered; removed last first
_registry_lock = threading.Lock()
_watching: list["_Watchdog"] = []  # the active watchdogs, outermost first


class remove_on_forced_exit:
    """Registers `path` (a file or a directory) for removal by the watchdog's forced exit, from now until
    `release()` or the end of a `with` block. A forced exit runs no `finally` and no `with` exit, so whatever
    a build keeps outside its staging directory and must not leave behind registers here (StagedOutput
    registers its staging directory and lock file itself)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        with _registry_lock:
            _registered[self] = None

    def release(self) -> None:
        with _registry_lock:
            _registered.pop(self, None)

    def __enter__(self) -> "remove_on_forced_exit":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# Hand-written: no library offers a signal-to-exit watchdog that survives a main thread stuck in C.
class _Watchdog:
    """Ends the process when a SIGTERM or SIGINT has not unwound the main thread within GRACE_SECONDS.

    Python's C-level signal handler writes the signal's number to the wakeup fd at once, whatever the main
    thread is doing; this thread reads it, waits the grace (`stop()` ends the wait when the main thread
    unwound by itself), waits for any deferred_signals() step to finish, then removes the registered paths
    and calls os._exit with 130 or 143."""

    def __init__(self):
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._stopped = threading.Event()
        self.previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        _watching.append(self)
        self._thread = threading.Thread(target=self._watch, name="edgefocal-signal-watchdog", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        signum = None
        while signum is None:
            received = os.read(self._read, 64)
            if self._stopped.is_set():
                return
            signum = next((s for s in received if s in _FORCED), None)
        if self._stopped.wait(GRACE_SECONDS):
            return
        with _atomic:  # held until os._exit: no new step starts, and none is cut in two
            if not self._stopped.is_set():
                _force_exit(signum)

    def stop(self) -> None:
        signal.set_wakeup_fd(self.previous_fd)
        if self in _watching:  # a forked child's hook emptied it
            _watching.remove(self)
        self._stopped.set()
        os.write(self._write, b"\0")  # wakes the reader
        self._thread.join()
        os.close(self._read)
        os.close(self._write)


def _force_exit(signum: int) -> None:
    code, what = _FORCED[signum]
    with _registry_lock:
        paths = [r.path for r in reversed(_registered)]
    for path in paths:
        for _ in range(10):  # a runtime thread may still be writing into the directory
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            if not os.path.lexists(path):
                break
            time.sleep(0.05)
    os.write(2, f"error: {what}; a runtime call did not return within {GRACE_SECONDS:g} s, so the process "
                f"exited without waiting for it (temporary files removed)\n".encode())
    os._exit(code)


def _stop_watching_in_child() -> None:
    """A forked child (a DataLoader worker) inherits the wakeup pipe but not the thread: its own SIGTERM,
    written into the pipe, would otherwise reach the parent's watchdog."""
    if _watching and threading.current_thread() is threading.main_thread():
        signal.set_wakeup_fd(_watching[0].previous_fd)
        _watching.clear()


os.register_at_fork(after_in_child=_stop_watching_in_child)


def _redeliver(signum: int, handler) -> None:
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # the default action: die of it, as without the deferral


def _install(signum: int, handler):
    """`signal.signal`, then the handler runs on the thread's own stack (see `_handle_on_thread_stack`)."""
    previous = signal.signal(signum, handler)
    _handle_on_thread_stack(signum)
    return previous


class _SigAction(ctypes.Structure):
    # glibc's `struct sigaction` on Linux x86_64 and aarch64 (handler, 1024-bit mask, flags, restorer)
    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16),
                ("flags", ctypes.c_int), ("restorer", ctypes.c_void_p)]


_SA_ONSTACK = 0x08000000


def _handle_on_thread_stack(signum: int) -> None:
    """Clear SA_ONSTACK, which CPython sets on every handler it installs.

    OpenVINO's CPU plugin gives each plugin instance an alternate signal stack (for AMX) and, when
    instances die out of creation order, leaves the main thread's alternate stack pointing at unmapped
    memory; a SIGTERM then crashed the build with SIGSEGV (exit 139) instead of raising `Terminated`.
    Python's C-level handler only sets a flag, so the ordinary stack serves it. No library exposes
    sigaction's flags, hence ctypes; elsewhere than Linux/glibc it does nothing."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    action = _SigAction()
    if libc.sigaction(signum, None, ctypes.byref(action)) != 0 or not action.flags & _SA_ONSTACK:
        return
    action.flags &= ~_SA_ONSTACK
    libc.sigaction(signum, ctypes.byref(action), None)
