"""The static type check of edgefocal/backends/tensorrt/ against NVIDIA's published TensorRT API
(tensorrt-stubs 10.13, read by basedpyright; mypy cannot parse those stubs): it passes on the package
and it bites — a misspelt TensorRT call and a wrong argument type fail it. `.ci/run` runs the same
check; this test installs what it needs the same way (the checker into the environment, the stubs into
build/trt-stubs, never site-packages, where they would make `import tensorrt` succeed as an empty
namespace package) and skips only when that install fails."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "pyrightconfig.json"
STUBS = REPO / "build" / "trt-stubs"
# the same pins as the type-check step in .ci/run
CHECKER, TRT_STUBS = "basedpyright==1.40.2", "tensorrt-stubs==10.13.0.35.1"

BAD = '''def build() -> None:
    import tensorrt as trt

    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    network = builder.create_netwrk(0)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, "2048")
'''
GOOD = BAD.replace("create_netwrk", "create_network").replace('"2048"', "2048 << 20")


def _pip(*args: str) -> str | None:
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
    return None if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-300:]


@pytest.fixture(scope="module")
def checker():
    """The command that runs basedpyright with the project's config, installing it and the stubs if absent."""
    if importlib.util.find_spec("basedpyright") is None and (err := _pip(CHECKER)):
        pytest.skip(f"cannot install {CHECKER} ({err})")
    if not (STUBS / "tensorrt" / "__init__.pyi").is_file() and (
            err := _pip("--no-deps", "--upgrade", "--target", str(STUBS), TRT_STUBS)):
        pytest.skip(f"cannot install {TRT_STUBS} into {STUBS} ({err})")

    def run(*paths: Path) -> tuple[int, list[dict]]:
        proc = subprocess.run([sys.executable, "-m", "basedpyright", "-p", str(CONFIG), "--outputjson",
                               *map(str, paths)], capture_output=True, text=True, cwd=REPO, timeout=600)
        report = json.loads(proc.stdout)
        return proc.returncode, [d for d in report["generalDiagnostics"] if d["severity"] == "error"]

    return run


def test_misspelt_call_and_wrong_argument_type_fail_the_check(checker, tmp_path):
    bad, good = tmp_path / "bad_trt.py", tmp_path / "good_trt.py"
    bad.write_text(BAD)
    good.write_text(GOOD)
    rc, errors = checker(bad)
    assert rc != 0
    assert [(e["range"]["start"]["line"] + 1, e["rule"]) for e in errors] == [
        (5, "reportAttributeAccessIssue"), (7, "reportArgumentType")]
    assert "create_netwrk" in errors[0]["message"] and "pool_size" in errors[1]["message"]
    assert checker(good) == (0, [])  # the same calls spelt right pass: the stubs were read, not missing


def test_tensorrt_package_passes_the_check(checker):
    rc, errors = checker()
    assert (rc, errors) == (0, [])


def test_no_ignore_comments_in_the_tensorrt_package():
    pattern = re.compile(r"#\s*(type|pyright)\s*:\s*ignore")
    found = [f"{p.name}:{i}" for p in sorted((REPO / "edgefocal" / "backends" / "tensorrt").glob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []
