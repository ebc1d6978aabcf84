"""Every install hint names an extra that pyproject.toml defines, and every optional backend is imported
through `require` with such a hint."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgefocal._deps import require
from edgefocal.backends import extra, names
from edgefocal.errors import MissingDependency

tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11

REPO = Path(__file__).resolve().parent.parent


def _extras() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def test_every_hinted_extra_exists():
    sources = "\n".join(p.read_text() for p in (REPO / "edgefocal").rglob("*.py"))
    hinted = set(re.findall(r"""require\(\s*"[\w.]+",\s*"(\w+)"\)""", sources))
    hinted |= set(re.findall(r"edgefocal\[(\w+)\]", sources))
    hinted |= {extra(name) for name in names()}
    assert hinted and hinted <= _extras(), hinted - _extras()


def test_missing_backend_names_its_extra():
    with pytest.raises(MissingDependency) as e:
        require("edgefocal_no_such_backend", "openvino")
    assert e.value.hint == "pip install 'edgefocal[openvino]'"
