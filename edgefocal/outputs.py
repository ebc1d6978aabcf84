"""Atomic output directories: a build writes into a staging directory beside the final one and moves
it into place only when it succeeded, so an interrupted or failed build leaves nothing half-written."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from edgefocal.errors import BadInput


class StagedOutput:
    def __init__(self, final: Path):
        self.final = Path(final)
        if self.final.exists() and not self.final.is_dir():
            raise BadInput(f"output {self.final} exists and is not a directory", hint="choose another --output")
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.staging-", dir=self.final.parent))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.path, 0o777 & ~umask)  # mkdtemp makes 0700; the result is an ordinary directory
        except OSError as e:
            raise BadInput(f"output directory {self.final} is not writable ({e.strerror})",
                           hint="choose a writable --output, or fix the directory's permissions") from None

    def commit(self) -> Path:
        """Replace the final directory with the staged one (two renames; the old one is removed last)."""
        old = None
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.rename(self.final, old)
        os.rename(self.path, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> "StagedOutput":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.path.exists():
            self.discard()


def artifact_files(path: Path) -> list[Path]:
    """The files that make up an artifact: an OpenVINO .xml has its .bin; an .mlpackage is a directory."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    files = [path]
    if path.suffix == ".xml" and path.with_suffix(".bin").exists():
        files.append(path.with_suffix(".bin"))
    return files


def artifact_size(path: Path) -> int:
    return sum(p.stat().st_size for p in artifact_files(path))


def artifact_sha256(path: Path) -> str:
    """sha256 of a file, or of its files' relative names and contents for a multi-file artifact."""
    files = artifact_files(path)
    h = hashlib.sha256()
    root = Path(path) if Path(path).is_dir() else Path(path).parent
    for f in files:
        if len(files) > 1:
            h.update(str(f.relative_to(root)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
