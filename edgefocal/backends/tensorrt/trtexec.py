"""Engines with `trtexec`, for boards that have TensorRT's binaries but not its Python bindings.

Own code: Polygraphy builds through the Python bindings only (its trtexec backend is a separate,
experimental extension that also needs them).

The version decides the flags, so it is read from trtexec's banner (`[TensorRT v100300]`) and a banner
that cannot be read is refused: guessing would mean either flags 11.x removed (`--fp16 --int8`) or a
weakly typed 10.x build."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edgefocal.errors import BadInput, EdgefocalError
from edgefocal.backends.tensorrt.strong_typing import TypingPlan

if TYPE_CHECKING:
    from edgefocal.backends.tensorrt.engine import EngineSpec

JETPACK_TRTEXEC = Path("/usr/src/tensorrt/bin/trtexec")
_BANNER = re.compile(r"\[TensorRT v(\d+)\]")


def find_trtexec(explicit: Path | None = None) -> Path | None:
    if explicit is not None:
        if not Path(explicit).is_file():
            raise BadInput(f"trtexec {explicit} does not exist", hint="point tensorrt.trtexec at the binary, "
                           f"e.g. {JETPACK_TRTEXEC} on JetPack")
        return Path(explicit)
    found = shutil.which("trtexec")
    if found:
        return Path(found)
    return JETPACK_TRTEXEC if JETPACK_TRTEXEC.is_file() else None


def version_from_banner(text: str) -> str | None:
    """'10.3.0' from '[TensorRT v100300]'; '8.6.1' from '[TensorRT v8601]' (NV_TENSORRT_VERSION is
    major*1000+minor*100+patch up to 9.x and major*10000+minor*100+patch from 10.0)."""
    m = _BANNER.search(text)
    if not m:
        return None
    v = int(m.group(1))
    if v >= 100000:
        return f"{v // 10000}.{(v // 100) % 100}.{v % 100}"
    return f"{v // 1000}.{(v // 100) % 10}.{v % 100}"


def trtexec_version(trtexec: Path) -> str:
    """The TensorRT version of a trtexec binary, or BadInput saying why it cannot be known."""
    try:
        proc = subprocess.run([str(trtexec), "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BadInput(f"{trtexec} does not run ({e})", hint="check the TensorRT installation") from e
    output = proc.stdout + proc.stderr
    version = version_from_banner(output)
    if version is None:
        first = output.strip().splitlines()[:1]
        raise BadInput(f"cannot tell the TensorRT version of {trtexec}: its --help output has no "
                       f"'[TensorRT vNNNNNN]' banner (starts: {first[0][:80] if first else 'nothing'!r})",
                       hint="point tensorrt.trtexec at TensorRT's own trtexec, or install TensorRT's Python "
                            "bindings (python3-libnvinfer on JetPack) so the engine is built through Polygraphy")
    return version


def trtexec_args(trtexec: Path, onnx_path: Path, engine_path: Path, spec: EngineSpec, plan: TypingPlan,
                 version: str, layer_info: Path) -> list[str]:
    """The trtexec command line for `spec` under `plan`."""
    from edgefocal.backends.tensorrt.strong_typing import major_version

    mn, opt, mx = ("x".join(map(str, s)) for s in spec.shapes())
    args = [str(trtexec), f"--onnx={onnx_path}", f"--saveEngine={engine_path}",
            f"--minShapes={spec.input_name}:{mn}", f"--optShapes={spec.input_name}:{opt}",
            f"--maxShapes={spec.input_name}:{mx}", f"--memPoolSize=workspace:{spec.workspace_mib}M",
            "--profilingVerbosity=detailed", f"--exportLayerInfo={layer_info}", "--skipInference"]
    if plan.strongly_typed and major_version(version) < 11:
        args.append("--stronglyTyped")  # 11.x: every network is strongly typed, no flag needed
    if plan.fp16_flag:
        args.append("--fp16")
    if plan.int8_flag:
        args.append("--int8")
    if spec.timing_cache is not None:
        args.append(f"--timingCacheFile={spec.timing_cache}")
    if spec.dla_core is not None:
        args += [f"--useDLACore={spec.dla_core}", "--allowGPUFallback"]
    if spec.sparse_weights:
        args.append("--sparsity=enable")
    return args


def run_trtexec(args: list[str], engine_path: Path, log: Callable[[str], None] = print) -> None:
    """Run a trtexec command line; EdgefocalError with its last lines when it fails."""
    log("running " + shlex.join(args))
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0 or not engine_path.is_file():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise EdgefocalError(f"trtexec failed (exit {proc.returncode}): {' | '.join(tail)}",
                             hint="rerun the printed trtexec command with --verbose to see the failing layer")
