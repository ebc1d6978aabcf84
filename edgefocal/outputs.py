"""Atomic output directories: a build writes into a staging directory beside the final one and moves
it into place only when it succeeded, so an interrupted or failed build leaves nothing half-written.

What a CI runner adds to that: a cancelled job (SIGTERM, then SIGKILL), two jobs writing the same
output, and readers that must never find the output missing. So one build holds an exclusive lock per
output (`.NAME.lock`, fcntl.flock: the kernel drops it when the process dies, even by SIGKILL); under
that lock any `.NAME.staging-*`/`.NAME.old-*` left by a killed build is stale and is removed; and the
new directory replaces the old one with one atomic `renameat2(RENAME_EXCHANGE)` on Linux (two renames
elsewhere, where a reader may see a moment without the directory). A SIGTERM that the build cannot unwind
from in time (signals.py's watchdog) still removes the staging directory and the lock file: both are
registered with `remove_on_forced_exit` while they exist."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from edgefocal.errors import BadInput
from edgefocal.signals import deferred_signals, remove_on_forced_exit

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE). False where the OS, libc or filesystem
    cannot, so the caller falls back to two renames; other errors are raised."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def lock_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.lock")


def _lock(final: Path) -> int:
    """An exclusive, non-blocking lock on `.NAME.lock` beside the output, holding the owner's pid. The
    file is removed on release (`_unlock`), so a lock taken on a file that was unlinked meanwhile is
    retried on the new file: two builds can never both hold the lock."""
    path = lock_path(final)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise BadInput(f"another build (pid {owner}) is writing {final} right now",
                           hint="wait for it to finish, or choose another --output") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous owner removed the file between our open and our lock
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _unlock(final: Path, fd: int) -> None:
    """Remove the lock file while still holding the lock, then release it."""
    try:
        os.unlink(lock_path(final))
    except FileNotFoundError:
        pass
    os.close(fd)


def remove_stale(final: Path) -> list[Path]:
    """Staging and half-replaced directories of `final` left by a killed build. Call only under the lock:
    then no live build owns them."""
    stale = [p for pattern in (f".{final.name}.staging-*", f".{final.name}.old-*")
             for p in final.parent.glob(pattern) if p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


class StagedOutput:
    def __init__(self, final: Path):
        self.final = Path(final)
        self.committed = False
        self._old: Path | None = None
        if self.final.exists() and not self.final.is_dir():
            raise BadInput(f"output {self.final} exists and is not a directory", hint="choose another --output")
        self._fd = None
        self._forced: list[remove_on_forced_exit] = []  # what a forced exit removes, released by close()
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self._fd = _lock(self.final)
            self._forced.append(remove_on_forced_exit(lock_path(self.final)))
            remove_stale(self.final)
            prefix = f".{self.final.name}.staging-{os.getpid()}-"
            self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.final.parent))
            self._forced.append(remove_on_forced_exit(self.path))  # after an exchange, it holds the old output
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.path, 0o777 & ~umask)  # mkdtemp makes 0700; the result is an ordinary directory
        except OSError as e:
            self.close()
            raise BadInput(f"output directory {self.final} is not writable ({e.strerror})",
                           hint="choose a writable --output, or fix the directory's permissions") from None
        except BaseException:
            self.close()
            raise

    def commit(self) -> Path:
        """Put the staged directory in place of the final one. The swap runs with SIGTERM/SIGINT held back,
        so a signal leaves either the old output or the complete new one, never neither; the old copy is
        removed afterwards (by __exit__ if a signal lands first)."""
        with deferred_signals():
            if not self.final.exists():
                os.rename(self.path, self.final)
            elif exchange(self.path, self.final):
                self._old = self.path  # the swap left the previous output at the staging path
            else:
                self._old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
                self._forced.append(remove_on_forced_exit(self._old))
                os.rename(self.final, self._old)
                os.rename(self.path, self.final)
            self.committed = True
        self._remove_old()
        return self.final

    def _remove_old(self) -> None:
        if self._old is not None:
            shutil.rmtree(self._old, ignore_errors=True)
            self._old = None

    def discard(self) -> None:
        """Remove the staging directory. A few tries: a library's worker thread may still be closing a file in
        it when a signal unwinds the main thread (seen under SIGTERM during the ONNX export on a loaded CPU)."""
        for _ in range(20):
            shutil.rmtree(self.path, ignore_errors=True)
            if not self.path.exists():
                return
            time.sleep(0.1)

    def close(self) -> None:
        """Release the output's lock (a SIGKILLed build leaves its lock file; the next build reuses it)."""
        for registered in self._forced:
            registered.release()
        if self._fd is not None:
            _unlock(self.final, self._fd)
            self._fd = None

    def __enter__(self) -> "StagedOutput":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._remove_old()
            if not self.committed and self.path.exists():
                self.discard()
        finally:
            self.close()


def artifact_size(files: list[Path]) -> int:
    """Bytes on disk of an artifact's files (its backend's `files`: an IR's .xml and .bin, a package's tree)."""
    return sum(p.stat().st_size for p in files)


def artifact_sha256(path: Path, files: list[Path]) -> str:
    """sha256 of one file, or of the files' names relative to `path` (or its folder) and their contents."""
    h = hashlib.sha256()
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    for f in files:
        if len(files) > 1:
            h.update(str(f.relative_to(root)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def write_file_atomically(path: Path, text: str) -> Path:
    """One file that a reader never finds half-written and an interrupted write leaves as it was: written beside
    it under a temporary name, then renamed over it. A directory that cannot be written is a BadInput."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise BadInput(f"cannot write {path} ({e.strerror})", hint="choose a writable --output") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
