"""The machine a build ran on, and its class: what makes latency ratios of two runs comparable."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    import torch

    info = {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    l4t = Path("/etc/nv_tegra_release")
    if l4t.exists():
        info["l4t"] = l4t.read_text().splitlines()[0].strip()
    return info


def machine_class(machine: dict) -> str:
    """What makes latency ratios comparable between two runs: OS, architecture, CPU model and count, GPU,
    and the Jetson L4T release. Kernel patch levels and hostnames do not enter."""
    parts = [machine.get("system"), machine.get("machine"), machine.get("cpu"),
             f"{machine.get('cpu_count')} cpus", machine.get("gpu") or "no gpu"]
    if machine.get("l4t"):
        parts.append(machine["l4t"])
    return " | ".join(str(p) for p in parts)
