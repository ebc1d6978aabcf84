"""FocalNet names on the exported graph: every node named after its torch module, every quantizable node
given its FocalNet role, and module paths spelled in FocalNet terms for reports."""
from __future__ import annotations

import onnx
import pytest

from edgefocal.export import onnx_from_torch
from edgefocal.naming import focalnet_label, module_of, roles


@pytest.fixture(scope="module")
def tiny_graph(tiny_focalnet, tmp_path_factory):
    return onnx.load(str(onnx_from_torch(tiny_focalnet, (1, 32, 32), tmp_path_factory.mktemp("names") / "t.onnx")))


def test_nodes_are_named_after_torch_modules(tiny_graph, tiny_focalnet):
    modules = {n for n, _ in tiny_focalnet.named_modules()} | {"model"}
    names = [n.name for n in tiny_graph.graph.node]
    assert len(set(names)) == len(names)
    assert all(module_of(n) in modules for n in names), [n for n in names if module_of(n) not in modules][:5]
    assert "layers.2.blocks.0.mlp.fc1/Conv" in names
    assert not any(n.startswith("node_") for n in names)


def test_every_focalnet_role_is_found(tiny_graph):
    found = roles(tiny_graph)
    by_role: dict[str, set[str]] = {}
    for module, role in found.values():
        by_role.setdefault(role, set()).add(module)
    assert by_role["f"] == {f"layers.{s}.blocks.0.modulation.f" for s in range(4)}
    assert by_role["focal"] == {f"layers.{s}.blocks.0.modulation.focal_layers.{lv}.0" for s in range(4) for lv in (0, 1)}
    assert by_role["head"] == {"head.fc"} and by_role["stem"] == {"stem.proj"}
    assert by_role["downsample"] == {f"layers.{s}.downsample.proj" for s in (1, 2, 3)}
    # per block: L gate products + the global-context product (gates), q·h (modulator), two residual adds
    gates = [n for n, (_, r) in found.items() if r == "gates" and n.startswith("layers.0.")]
    modulator = [n for n, (_, r) in found.items() if r == "modulator" and n.startswith("layers.0.")]
    residual = [n for n, (_, r) in found.items() if r == "residual" and n.startswith("layers.0.")]
    assert (len(gates), len(modulator), len(residual)) == (3, 1, 2)
    assert {"norm", "act", "context", "pool"} <= set(by_role)


def test_labels_in_focalnet_terms():
    assert focalnet_label("layers.2.blocks.1.modulation.h") == "stage 3 block 2 modulation h"
    assert focalnet_label("layers.0.blocks.0.modulation.focal_layers.1.0") == "stage 1 block 1 focal level 1"
    assert focalnet_label("layers.3.downsample.proj") == "stage 4 downsample conv"
    assert focalnet_label("layers.1.blocks.0.mlp.fc2") == "stage 2 block 1 mlp fc2"
    assert focalnet_label("layers.1.blocks.0.modulation", "gates") == "stage 2 block 1 gate products"
    assert focalnet_label("stem.proj") == "stem conv"
