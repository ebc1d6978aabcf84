"""Optional backends are imported where they are used, with a hint naming the extra that installs them."""
from __future__ import annotations

import importlib
from types import ModuleType

from edgefocal.errors import MissingDependency


def require(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependency(
            f"{module} is not importable ({e})", hint=f"pip install 'edgefocal[{extra}]'"
        ) from e
