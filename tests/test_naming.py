"""FocalNet names on the exported graph: every node named after its torch module, every quantizable node
given its FocalNet role, and module paths spelled in FocalNet terms for reports."""
from __future__ import annotations

import onnx
import pytest

from edgefocal.export import onnx_from_torch
from edgefocal.naming import (BY_CONSUMERS, BY_NAME, BY_PRODUCERS, OTHER, attribute, focalnet_label, module_of,
                              module_of_op, part_kind, roles, stage_of)


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


def test_executed_ops_are_attributed_by_name_then_by_the_graph():
    """OpenVINO's shapes of it: a LayerNorm decomposed under the plugin's own names feeds only the norm's last
    op; a reorder feeds only a conv; the head's bias add, named after the graph output, is fed only by head.fc, a
    split only by the norm; an op both fed by two parts and feeding two stays unattributed."""
    graph = {"input": [], "input/fq": ["input"], "Reorder_1": ["input/fq", "Const_1"],
             "stem.proj/Conv": ["Reorder_1", "Const_2"], "ReduceMean_7": ["stem.proj/Conv"],
             "Power_8": ["stem.proj/Conv", "ReduceMean_7"], "ReduceMean_9": ["Power_8"],
             "stem.norm/Div": ["Power_8", "ReduceMean_9"], "Split_3": ["stem.norm/Div"],
             "layers.0.blocks.0.modulation.f/Conv": ["Split_3"], "layers.0.blocks.0.mlp.fc1/Conv": ["Split_3"],
             "Concat_4": ["layers.0.blocks.0.modulation.f/Conv", "layers.0.blocks.0.mlp.fc1/Conv"],
             "layers.0.blocks.0.modulation.h/Conv": ["Concat_4"],
             "head.fc/MatMul": ["Concat_4", "layers.0.blocks.0.modulation.h/Conv"], "logits": ["head.fc/MatMul", "Const_3"],
             "logits/sink": ["logits"]}
    named = {op: (module_of_op(op), BY_NAME) for op in graph if module_of_op(op) != OTHER}
    found = attribute(graph, named)
    assert found["ReduceMean_7"] == found["Power_8"] == found["ReduceMean_9"] == ("stem.norm", BY_CONSUMERS)
    assert found["Reorder_1"] == found["input/fq"] == ("stem.proj", BY_CONSUMERS)
    assert found["logits"] == ("head.fc", BY_PRODUCERS)
    assert found["stem.norm/Div"] == ("stem.norm", BY_NAME)
    assert found["Split_3"] == ("stem.norm", BY_PRODUCERS)
    assert "Concat_4" not in found  # fed by f and fc1, feeding h and head.fc
    assert found["logits/sink"] == ("head.fc", BY_PRODUCERS)  # placed once its producer was


def test_part_kinds_and_stages():
    kinds = {m: part_kind(m) for m in (
        "stem.proj", "stem.norm", "layers.1.downsample.proj", "layers.1.downsample.norm", "layers.0.blocks.0.norm1",
        "layers.0.blocks.0.modulation.f", "layers.0.blocks.0.modulation.focal_layers.1.0",
        "layers.0.blocks.0.modulation.focal_layers.1.1", "layers.0.blocks.0.modulation.act",
        "layers.0.blocks.0.modulation", "layers.0.blocks.0.modulation.h", "layers.0.blocks.0.mlp.fc1",
        "layers.0.blocks.0.mlp.act", "layers.2.blocks.1", "norm", "head.global_pool.pool", "head.fc", "model", OTHER)}
    assert list(kinds.values()) == ["stem", "norm", "downsample", "norm", "norm", "f", "focal", "focal act", "context",
                                    "modulation", "h", "fc1", "act", "residual", "norm", "pool", "head", "model", OTHER]
    assert [stage_of(m) for m in ("stem.proj", "layers.0.blocks.0.mlp.fc1", "layers.3.downsample.norm", "norm",
                                  "head.fc", OTHER)] == ["stem", "stage 1", "stage 4", "head", "head", OTHER]
