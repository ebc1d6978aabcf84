"""Small ONNX graph helpers shared by the graph rewrites (openvino/nchw_layernorm.py, conv_split.py)."""
from __future__ import annotations


def attribute(node, name: str, default):
    """A node attribute's value, or `default` when the node does not set it."""
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def drop_unread_initializers(model) -> None:
    """Initializers no node reads any more after a rewrite (the LayerNorms' 1-D γ and β, now read in their
    C×1×1 copies; a split conv's whole weight): ONNX Runtime warns about each one left."""
    read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for t in [t for t in model.graph.initializer if t.name not in read]:
        model.graph.initializer.remove(t)
