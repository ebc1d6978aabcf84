"""Writing an .mlpackage that two builds of the same inputs write byte for byte.

coremltools' `MLModel.save` is not reproducible: the package's Manifest.json names its two items by fresh
random UUIDs, and model.mlmodel serializes the metadata map (edgefocal's preprocessing, coremltools' version)
in hash order, which changes from process to process. The program and weights are otherwise the same bytes.
So the package is saved as coremltools saves it, then those two files are rewritten in a canonical form that
Core ML reads the same way: identifiers derived from each item's path, and the spec serialized with
protobuf's deterministic map order."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

SPEC = Path("Data") / "com.apple.CoreML" / "model.mlmodel"
#: the namespace of item identifiers: any fixed UUID works, this one is uuid5(NAMESPACE_URL, "edgefocal")
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "edgefocal")


def save_package(mlmodel, path: Path) -> Path:
    """`mlmodel.save(path)`, then the package made reproducible (see the module docstring)."""
    mlmodel.save(str(path))
    canonicalize(Path(path))
    return Path(path)


def canonicalize(package: Path) -> None:
    """Rewrite a saved package's Manifest.json and model.mlmodel in their canonical form, in place."""
    from coremltools.proto import Model_pb2

    spec_file = package / SPEC
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_file.read_bytes())
    spec_file.write_bytes(spec.SerializeToString(deterministic=True))
    manifest_file = package / "Manifest.json"
    manifest = json.loads(manifest_file.read_text())
    renamed = {old: str(uuid.uuid5(_NAMESPACE, entry["path"])) for old, entry in manifest["itemInfoEntries"].items()}
    manifest["itemInfoEntries"] = {renamed[old]: entry for old, entry in manifest["itemInfoEntries"].items()}
    manifest["rootModelIdentifier"] = renamed[manifest["rootModelIdentifier"]]
    manifest_file.write_text(json.dumps(manifest, indent=4, sort_keys=True) + "\n")
