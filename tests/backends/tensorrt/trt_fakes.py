"""FAKES standing in for TensorRT in tests, named as such: `fake_tensorrt` (a module object with the few
enums edgefocal passes to Polygraphy, and a version to branch on) and `fake_trtexec` (a script that
prints trtexec's banner and writes the files trtexec would). Neither builds or runs anything; the real
path is tested by the `tensorrt`-marked tests on a machine with TensorRT."""
from __future__ import annotations

import stat
import sys
import types
from pathlib import Path


def fake_tensorrt(version: str) -> types.ModuleType:
    """A FAKE `tensorrt` module: `__version__` and the enum members edgefocal names (each a string)."""
    trt = types.ModuleType("tensorrt")
    trt.__dict__.update(
        __version__=version,
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
        ProfilingVerbosity=types.SimpleNamespace(DETAILED="DETAILED"),
        DeviceType=types.SimpleNamespace(DLA="DLA", GPU="GPU"),
        BuilderFlag=types.SimpleNamespace(GPU_FALLBACK="GPU_FALLBACK"),
        LayerInformationFormat=types.SimpleNamespace(JSON="JSON"),
        TensorIOMode=types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"),
    )
    return trt


FAKE_TRTEXEC = '''#!{python}
"""FAKE trtexec for tests: prints TensorRT's banner, writes --saveEngine and --exportLayerInfo."""
import json, sys
print({banner!r})
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
if "--help" in sys.argv:
    sys.exit(0)
if {fail}:
    print("[E] Error[4]: ITensor::getDimensions: Error Code 4: API Usage Error"); sys.exit(1)
open(args["saveEngine"], "wb").write(b"fake-plan")
layers = [{{"Name": "input to nvm", "LayerType": "Reformat", "Inputs": [{{"Name": "input"}}], "Outputs": [{{"Name": "i_nvm"}}]}},
          {{"Name": "{{ForeignNode[/stem/proj/Conv.../layers.3/Add]}}", "LayerType": "ForeignNode",
            "Inputs": [{{"Name": "i_nvm"}}], "Outputs": [{{"Name": "f_nvm"}}]}},
          {{"Name": "f from nvm", "LayerType": "Reformat", "Inputs": [{{"Name": "f_nvm"}}], "Outputs": [{{"Name": "f"}}]}},
          {{"Name": "{{ForeignNode[/head/fc/Gemm]}}", "LayerType": "Myelin", "Inputs": [{{"Name": "f"}}], "Outputs": [{{"Name": "logits"}}]}}]
json.dump({{"Layers": layers if "useDLACore" in args else layers[3:]}}, open(args["exportLayerInfo"], "w"))
open(args["saveEngine"] + ".argv", "w").write(json.dumps(sys.argv[1:]))
'''


def fake_trtexec(directory: Path, banner: str = "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec",
                 fail: bool = False) -> Path:
    """Write a FAKE trtexec into `directory`: with a DLA core its layer info holds one DLA loadable (between
    nvm transfers) and one Myelin GPU layer; without, the GPU layer only. It records its argv beside the engine."""
    path = directory / "trtexec"
    path.write_text(FAKE_TRTEXEC.format(python=sys.executable, banner=banner, fail=fail))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path
