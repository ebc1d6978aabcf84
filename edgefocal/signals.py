"""SIGTERM handled like Ctrl-C, because SIGTERM is what CI sends when a job is cancelled or times out.

Python's default for SIGTERM is to die on the spot: no `finally`, no `with` exit, so a build left its
`.NAME.staging-*` directory behind. Inside `sigterm_raises()` the signal raises `Terminated` in the main
thread instead, the staging directory's context manager removes it, and the CLI maps `Terminated` to
exit 143 (128 + 15, what a shell reports for a job killed by SIGTERM); SIGINT keeps 130."""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from contextlib import contextmanager

EXIT_SIGTERM = 128 + signal.SIGTERM  # 143
EXIT_SIGINT = 128 + signal.SIGINT  # 130


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
    the clean-up can finish; SIGKILL is the way to stop it harder). Outside the main thread, where Python
    cannot install handlers, it does nothing."""
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
    try:
        yield
    except Exception as e:
        # a library's C code can catch the raised Terminated and raise its own error instead (torch's
        # loader turned it into a ValueError): after a SIGTERM, the process still ends as terminated
        if fired:
            raise Terminated() from e
        raise
    finally:
        _install(signal.SIGTERM, previous)


@contextmanager
def deferred_signals():
    """Hold SIGTERM and SIGINT back while inside (a step that must not be cut in two, like swapping the
    output directory); a signal that arrived meanwhile is handed to the previous handler on the way out.

    Done with Python handlers, not pthread_sigmask: a process-directed signal goes to any thread that has
    it unblocked (torch, ONNX Runtime and OpenVINO start threads), and Python then runs its handler in the
    main thread whatever the main thread's mask says."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {s: _install(s, lambda signum, frame: arrived.append(signum))
                for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            _install(s, handler)
        for s in dict.fromkeys(arrived):
            _redeliver(s, previous[s])


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
