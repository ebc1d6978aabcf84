"""The backends, listed once and imported late: a runtime's package is imported only when it is used.

Adding a runtime means one package with a `Backend` subclass and one line in BUILTIN (or, from outside the
package, `register(MyBackend)`); everything else looks backends up here."""
from __future__ import annotations

import difflib
import importlib
from pathlib import Path

from edgefocal.backends.base import Backend
from edgefocal.errors import BadInput

#: name -> "module:class"; dict order is the order `doctor` lists them in
BUILTIN: dict[str, str] = {
    "onnxruntime": "edgefocal.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "edgefocal.backends.openvino:OpenVINOBackend",
    "tensorrt": "edgefocal.backends.tensorrt:TensorRTBackend",
    "coreml": "edgefocal.backends.coreml:CoreMLBackend",
}
#: "auto" picks the first of these that can build and run here
AUTO_ORDER = ("tensorrt", "openvino", "onnxruntime")
AUTO = "auto"
_REGISTERED: dict[str, type[Backend]] = {}


def register(backend: type[Backend]) -> type[Backend]:
    """Make a backend class available by its name (usable as a class decorator)."""
    _REGISTERED[backend.name] = backend
    return backend


def unregister(name: str) -> None:
    _REGISTERED.pop(name, None)


def names() -> list[str]:
    """Every backend name, built-in first."""
    return list(BUILTIN) + [n for n in _REGISTERED if n not in BUILTIN]


def extra(name: str) -> str:
    """The pip extra of a built-in backend, without importing it (for the fix when its import fails)."""
    return name if name in BUILTIN else ""


def get_backend(name: str) -> Backend:
    if name in _REGISTERED:
        return _REGISTERED[name]()
    spec = BUILTIN.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, names(), n=1)
        raise BadInput(f"unknown target '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""),
                       hint=f"use one of: {', '.join(names())} (or {AUTO})")
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)()


def auto_target() -> str:
    """The first backend of AUTO_ORDER that can build and run here."""
    for name in AUTO_ORDER:
        try:
            avail = get_backend(name).availability()
        except ImportError:
            continue
        if avail.can_build and avail.can_run:
            return name
    return AUTO_ORDER[-1]


def resolve(targets: list[str]) -> list[str]:
    """The recipe's target names with "auto" resolved, in order, without repeats."""
    return list(dict.fromkeys(auto_target() if t == AUTO else t for t in targets))


def backend_of(entry: dict) -> Backend:
    """The backend of a manifest artifact entry."""
    return get_backend(entry["target"])


def files_of(target: str, artifact: Path) -> list[Path]:
    return get_backend(target).files(artifact)


__all__ = ["AUTO", "AUTO_ORDER", "BUILTIN", "Backend", "auto_target", "backend_of", "files_of", "get_backend",
           "names", "register", "resolve", "unregister"]
