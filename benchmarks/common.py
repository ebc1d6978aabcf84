"""What every benchmark file starts with: the command that wrote it, the date, the machine and its load.

A benchmark file is the whole output of its script's last run: scripts build their text in memory and
write the file once, at the end, with `write`."""
from __future__ import annotations

import datetime as dt
import os
import shlex
import sys
from pathlib import Path

from edgefocal.machine import machine
from edgefocal.manifest import package_versions


def header(title: str) -> list[str]:
    m = machine()
    packages = ", ".join(f"{k} {v}" for k, v in package_versions().items() if k != "edgefocal")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    command = shlex.join(["python", *[str(a) for a in sys.argv]])
    return [f"# {title}", "",
            f"Written by `{command}` on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; {m['cpu']} "
            f"({m['cpu_count']} cores), {m['system']} {m['machine']}, GPU: {m['gpu'] or 'none'}; load average at "
            f"start {load} (1, 5, 15 min); {packages}.", ""]


def write(path: Path, lines: list[str]) -> None:
    text = "\n".join(lines).rstrip("\n") + "\n"
    print(text)
    Path(path).write_text(text)
