"""The engine's sidecar JSON and the device guard.

A TensorRT engine runs only on the GPU model and TensorRT version that built it, and the failure at load
time is cryptic (or a silent slowdown). Every engine gets `<engine>.json` with what it was built on and
from; loading it anywhere else is refused with the command that rebuilds it there."""
from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
import subprocess
from pathlib import Path

from edgefocal.errors import BadInput

SIDECAR_VERSION = 1


def sidecar_path(engine: Path) -> Path:
    return Path(engine).with_suffix(Path(engine).suffix + ".json")


def l4t_release(path: Path = Path("/etc/nv_tegra_release")) -> str | None:
    """'R36.3.0' from '# R36 (release), REVISION: 3.0, ...' (Jetson only)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"R{m.group(1)}.{m.group(2)}" if m else text.strip().splitlines()[0][:60]


def jetpack_release() -> str | None:
    if not shutil.which("dpkg-query"):
        return None
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def gpu_facts() -> dict:
    """GPU name and compute capability, from torch (CUDA) or nvidia-smi; empty without a GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"gpu_name": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
    except Exception:  # a torch without CUDA support raises on some calls
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
            if out:
                name, cc = (s.strip() for s in out[0].split(","))
                return {"gpu_name": name, "compute_capability": cc}
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
    return {}


def device_facts(tensorrt_version: str | None) -> dict:
    facts = {"tensorrt_version": tensorrt_version, **gpu_facts()}
    l4t = l4t_release()
    if l4t:
        facts["l4t"] = l4t
        facts["jetpack"] = jetpack_release()
    return facts


def write_sidecar(engine: Path, facts: dict, build: dict, onnx_sha256: str, rebuild_command: str) -> Path:
    from edgefocal._version import __version__

    data = {
        "sidecar_version": SIDECAR_VERSION,
        "engine": Path(engine).name,
        **facts,
        "build": build,
        "onnx_sha256": onnx_sha256,
        "rebuild_command": rebuild_command,
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "edgefocal_version": __version__,
    }
    path = sidecar_path(engine)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_sidecar(engine: Path) -> dict:
    path = sidecar_path(engine)
    if not path.is_file():
        raise BadInput(f"engine {engine} has no sidecar {path.name}; its device and TensorRT version are unknown",
                       hint="rebuild the engine on this device with `python -m edgefocal engine --onnx MODEL.onnx ...`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BadInput(f"sidecar {path} is not valid JSON ({e})", hint="rebuild the engine on this device") from e


def _release(version: str | None) -> tuple[str, ...]:
    """'10.3.0.30' (Python bindings) and '10.3.0' (trtexec's banner) are the same release."""
    return tuple(str(version).split(".")[:3])


def check_engine_device(engine: Path, current: dict) -> dict:
    """Refuse an engine built for another GPU or TensorRT version; return its sidecar."""
    meta = read_sidecar(engine)
    problems = []
    if _release(meta.get("tensorrt_version")) != _release(current.get("tensorrt_version")):
        problems.append(f"TensorRT {meta.get('tensorrt_version')} (here: {current.get('tensorrt_version')})")
    for key, label in (("gpu_name", "GPU"), ("compute_capability", "compute capability")):
        if meta.get(key) and current.get(key) and meta[key] != current[key]:
            problems.append(f"{label} {meta[key]} (here: {current[key]})")
    if problems:
        raise BadInput(
            f"engine {engine} was built for {', '.join(problems)}; TensorRT engines do not move between "
            "GPUs or TensorRT versions",
            hint=f"rebuild it on this device: {meta.get('rebuild_command') or 'python -m edgefocal engine --onnx MODEL.onnx ...'}",
        )
    return meta
