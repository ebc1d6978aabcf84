"""`edgefocal predict`: classify image files with one built artifact, the way an application would.

The artifact is run by the same runner the build verified it with, on images preprocessed by the manifest's
data config (the steps `edgefocal inspect` prints), and its file is checked against the manifest's sha256
first, so a prediction is about the artifact the report describes, not one copied over it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgefocal.data import IMAGE_SUFFIXES
from edgefocal.errors import BadInput
from edgefocal.core import Runner


@dataclass
class Prediction:
    """The top classes of one image: (class index, class name, softmax probability), best first."""

    image: Path
    top: list[tuple[int, str, float]]

    def to_dict(self) -> dict:
        return {"image": str(self.image),
                "top": [{"class": i, "name": n, "probability": round(p, 6)} for i, n, p in self.top]}


@dataclass
class BuiltArtifact:
    """An artifact file of a build output and the manifest that describes it."""

    path: Path
    output: Path  # the build's output directory (where manifest.json is)
    manifest: dict
    entry: dict  # the artifact's entry in manifest["artifacts"]


def find_artifact(artifact: Path) -> BuiltArtifact:
    """The artifact's build: the nearest manifest.json above it that lists it."""
    from edgefocal.buildinfo import read as read_build

    artifact = Path(artifact)
    if not artifact.exists():
        raise BadInput(f"artifact {artifact} does not exist", hint="pass a file from a build output, e.g. "
                       "build/edgefocal/openvino/model_int8.xml (edgefocal inspect OUTPUT lists them)")
    for output in artifact.resolve().parents:
        if (output / "manifest.json").is_file():
            manifest, _ = read_build(output)  # a damaged manifest.json is a one-line error, not a traceback
            relative = str(artifact.resolve().relative_to(output))
            entry = next((a for a in manifest.get("artifacts", []) if a["path"] == relative), None)
            if entry is None:
                entry = unlisted_entry(manifest, artifact, relative)
            if entry is None:
                raise BadInput(f"{artifact} is not an artifact of the build in {output} (manifest.json does not list it)",
                               hint=f"pass one of: {', '.join(a['path'] for a in manifest.get('artifacts', []))}")
            if "preprocessing" not in manifest:
                raise BadInput(f"{output / 'manifest.json'} records no preprocessing (schema {manifest.get('schema')})",
                               hint="rebuild with this edgefocal version; older builds did not record it")
            return BuiltArtifact(artifact, output, manifest, entry)
    raise BadInput(f"no manifest.json above {artifact}", hint="pass an artifact inside an edgefocal build output")


def unlisted_entry(manifest: dict, artifact: Path, relative: str) -> dict | None:
    """An artifact the manifest does not list that a backend still recognises as the build's (a TensorRT
    engine built later on the device, from one of the build's ONNX files)."""
    from edgefocal.backends import get_backend, names

    # every backend, not the manifest's targets: the build need not have built for the engine's backend, and
    # the exported FP32 ONNX is listed with target "onnx", which is no backend
    for name in names():
        try:
            backend = get_backend(name)
        except ImportError:  # a backend whose package does not import here recognises nothing
            continue
        if (entry := backend.unlisted_entry(manifest, artifact, relative)) is not None:
            return entry
    return None


def check_unchanged(built: BuiltArtifact) -> None:
    from edgefocal.backends import backend_of
    from edgefocal.outputs import artifact_sha256

    if built.entry["sha256"] is None:  # an engine built later: its sidecar tied it to the build's ONNX
        return
    if artifact_sha256(built.path, backend_of(built.entry).files(built.path)) != built.entry["sha256"]:
        raise BadInput(f"{built.path} is not the artifact the build verified: its sha256 differs from manifest.json's",
                       hint="rebuild, or restore the file the build wrote")


def runner_for(built: BuiltArtifact, threads: int | None = None) -> Runner:
    """The runner the build verified this artifact with: its backend's, named in the manifest."""
    from edgefocal.backends import backend_of

    return backend_of(built.entry).runner(built.path, built.entry["precision"], threads)


def image_files(paths: list[Path]) -> list[Path]:
    """The image files named, and those inside named directories (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        elif p.is_file():
            out.append(p)
        else:
            raise BadInput(f"image {p} does not exist", hint="pass image files or directories of images")
    if not out:
        raise BadInput(f"no images in {', '.join(map(str, paths))}",
                       hint=f"pass files with one of: {', '.join(sorted(IMAGE_SUFFIXES))}")
    return out


def load_images(files: list[Path], data_config: dict) -> np.ndarray:
    """float32 NCHW, each image through the data config's transform (the build's own preprocessing code)."""
    from PIL import Image, UnidentifiedImageError

    from edgefocal.preprocessing import make_transform

    transform = make_transform(data_config)
    out = np.empty((len(files), *data_config["input_size"]), np.float32)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as img:
                out[i] = transform(img).numpy()
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise BadInput(f"image {f} is corrupt or not an image ({e})", hint="delete or replace that file") from e
    return out


def top_k(logits: np.ndarray, class_names: list[str], k: int) -> list[list[tuple[int, str, float]]]:
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return [[(int(c), class_names[c], float(p[c])) for c in row] for row, p in zip(order, probs)]


def predict(artifact: Path, images: list[Path], k: int = 5, threads: int | None = None) -> list[Prediction]:
    """Top-k classes of each image by `artifact` (a file of an edgefocal build output)."""
    from edgefocal.verify.evaluate import predict as run_batches

    built = find_artifact(artifact)
    check_unchanged(built)
    files = image_files(images)
    config = built.manifest["model"]["data_config"]
    x = load_images(files, config)
    with runner_for(built, threads) as runner:  # batches of 100, as the build's evaluation (an engine: its profile's)
        logits = run_batches(runner, x, batch=int(built.entry.get("max_batch", 100)))
    names = built.manifest.get("class_names") or [str(i) for i in range(logits.shape[1])]
    return [Prediction(f, top) for f, top in zip(files, top_k(logits, names, min(k, logits.shape[1])))]
