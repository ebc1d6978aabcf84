"""CI: can `pip install "edgefocal[tensorrt]"` be resolved on a Jetson from wheels alone, without replacing
JetPack's torch, torchvision or TensorRT and without pulling CUDA wheels? Checked on any machine, installing
nothing: pip's resolver runs with `--dry-run --ignore-installed --report` for aarch64 (manylinux_2_17 to
2_35, JetPack 6's glibc) and Python 3.10, `--only-binary=:all:` (a Jetson cannot be expected to compile).

pip cannot see what a machine it is not running on has installed, so JetPack's packages (.ci/jetpack-6.1.txt)
stand in as local stub wheels, pinned by a constraint: a dependency that wants another torch then fails to
resolve, as it would on the device. The requirements are read from pyproject.toml (core + the extra, with
edgefocal[...] self-references expanded), so the check follows the file.

    python .ci/resolve_jetson.py [--extra tensorrt] [--provided .ci/jetpack-6.1.txt] [--requirement REQ ...]

Exit 0: resolvable and clean (the resolved set is printed); 1: it is not, with the reason."""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{minor}_aarch64" for minor in range(17, 36)]
#: never from the index on a Jetson: JetPack's own, or CUDA builds for other GPUs
FORBIDDEN = re.compile(r"^(torch|torchvision|torchaudio|tensorrt.*|nvidia-.*|.*-cu1[0-9]|onnxruntime-gpu|cupy.*|"
                       r"triton|jax-cuda.*)$")


class Unresolvable(Exception):
    """pip found no set of aarch64 wheels that satisfies the requirements."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: Path, extra: str | None) -> list[str]:
    """The core dependencies plus `extra`'s, with `edgefocal[a,b]` self-references expanded."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    out, pending, seen = list(project.get("dependencies", [])), [extra] if extra else [], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        if name not in extras:
            raise SystemExit(f"error: pyproject.toml defines no extra '{name}'")
        seen.add(name)
        for req in extras[name]:
            own = re.fullmatch(r"edgefocal\[([\w,\s-]+)\]", req.strip())
            if own:
                pending += [e.strip() for e in own.group(1).split(",")]
            else:
                out.append(req)
    return out


def stub_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] | list[str] = (),
               tag: str = "py3-none-any") -> Path:
    """A minimal wheel (metadata only): all pip's resolver reads of a package."""
    from packaging.version import Version

    version = str(Version(version))
    stem = f"{re.sub(r'[-.]+', '_', name)}-{version}"
    info = f"{stem}.dist-info"
    files = {f"{info}/METADATA": "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                                            *(f"Requires-Dist: {r}" for r in requires)]) + "\n",
             f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: stub\nRoot-Is-Purelib: true\nTag: {tag}\n"}

    def digest(text: str) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()

    files[f"{info}/RECORD"] = "".join(f"{p},sha256={digest(c)},{len(c)}\n" for p, c in files.items()) + f"{info}/RECORD,,\n"
    path = folder / f"{stem}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        for member, text in files.items():
            z.writestr(member, text)
    return path


def provided(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalize(name)] = version.strip()
    return pins


def resolve(reqs: list[str], pins: dict[str, str], index: list[str], python: str = "3.10") -> list[dict]:
    """pip's resolution (its --report 'install' list) for a Jetson, JetPack's packages as local stubs."""
    with tempfile.TemporaryDirectory() as tmp:
        stubs = Path(tmp) / "jetpack"
        stubs.mkdir()
        for name, version in pins.items():
            stub_wheel(stubs, name, version)
        constraints = Path(tmp) / "jetpack.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--target", str(Path(tmp) / "target"), "--report", str(report), "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "--find-links", str(stubs),
               "-c", str(constraints), *index, *(f"--platform={p}" for p in PLATFORMS), *reqs]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or done.stderr.splitlines()
            raise Unresolvable(" | ".join(lines[-4:]))
        installs = json.loads(report.read_text())["install"]
        for item in installs:
            item["stub"] = item["download_info"]["url"].startswith(stubs.as_uri())
        return installs


def problems(installs: list[dict]) -> list[str]:
    """What a Jetson must not get from the index: JetPack's packages or CUDA wheels, or a non-aarch64 wheel."""
    out = []
    for item in installs:
        name, version = normalize(item["metadata"]["name"]), item["metadata"]["version"]
        wheel = item["download_info"]["url"].rsplit("/", 1)[-1]
        if item["stub"]:
            continue
        if FORBIDDEN.match(name):
            out.append(f"{name} {version} would come from the index ({wheel}), over JetPack's own or as a CUDA wheel")
        platform = wheel[:-4].split("-")[-1] if wheel.endswith(".whl") else "sdist"
        if platform != "any" and "aarch64" not in platform:
            out.append(f"{name} {version}: {wheel} is not an aarch64 wheel")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--extra", default="tensorrt", help="the extra a Jetson installs (tensorrt)")
    p.add_argument("--provided", type=Path, default=REPO / ".ci" / "jetpack-6.1.txt")
    p.add_argument("--requirement", action="append", default=None,
                   help="resolve these instead of pyproject.toml's (repeatable; tests use it)")
    p.add_argument("--index-url", default="https://pypi.org/simple")
    p.add_argument("--find-links", help="an extra folder of wheels (tests: offline stubs)")
    p.add_argument("--no-index", action="store_true", help="only --find-links (tests)")
    args = p.parse_args(argv)
    reqs = args.requirement or requirements(REPO / "pyproject.toml", args.extra)
    index = ["--no-index"] if args.no_index else ["--index-url", args.index_url]
    index += ["--find-links", args.find_links] if args.find_links else []
    what = " ".join(args.requirement) if args.requirement else f"edgefocal[{args.extra}]"
    try:
        installs = resolve(reqs, provided(args.provided), index)
    except Unresolvable as e:
        print(f"error: {what} cannot be installed on a Jetson (aarch64, Python 3.10) from wheels: {e}", file=sys.stderr)
        return 1
    found = problems(installs)
    for line in found:
        print(f"error: {what}: {line}", file=sys.stderr)
    if not found:
        names = ", ".join(f"{i['metadata']['name']} {i['metadata']['version']}" for i in installs if not i["stub"])
        print(f"ok: {what} resolves for aarch64/Python 3.10 over JetPack "
              f"({', '.join(f'{n} {v}' for n, v in provided(args.provided).items())}): {names}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
