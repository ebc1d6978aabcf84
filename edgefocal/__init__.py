"""edgefocal: a trained FocalNet in, verified INT8 edge artifacts out.

    import edgefocal
    result = edgefocal.build(model, calibration=x, eval=(x, y), targets=["openvino"], output="build/api")

`build` and `BuildResult` live in edgefocal/api.py and are imported on first use, so `import edgefocal`
(and `python -m edgefocal`) does not import torch before it is needed."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgefocal._version import __version__
__all__ = ["BuildResult", "__version__", "build"]

if TYPE_CHECKING:
    from edgefocal.api import BuildResult, build


def __getattr__(name: str) -> Any:  # PEP 562
    if name in ("build", "BuildResult"):
        from edgefocal import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgefocal' has no attribute {name!r}")
