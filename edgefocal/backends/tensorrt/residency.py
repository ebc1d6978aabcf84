"""Which engine layers run on the DLA and which on the GPU, read from the engine inspector's JSON
(`IEngineInspector.get_engine_information(LayerInformationFormat.JSON)` or trtexec --exportLayerInfo).

Own code: Polygraphy's `inspect model` lists an engine's layers but does not say where they run.

A DLA subgraph appears in the engine as one fused `{ForeignNode[first...last]}` layer. Myelin, TensorRT's
GPU graph compiler, names its fused GPU layers the same way, so a name alone says nothing — counting
every ForeignNode as DLA whenever a DLA core is set (what this module did before) reports GPU work as
DLA. What does tell them apart:
- TensorRT moves a DLA subgraph's inputs and outputs through the DLA's memory with reformat layers
  named `<tensor> to nvm` and `<tensor> from nvm` (plus `<tensor> copy finish`), visible in the layer
  list of any DLA engine (NVIDIA/TensorRT#3143: "images to nvm", "{ForeignNode[Conv_0...Concat_198]}",
  "head_3 from nvm"). A ForeignNode that reads a tensor written by a `to nvm` layer, or writes one read
  by a `from nvm` layer, is a DLA loadable.
- A layer type naming DLA, where a TensorRT version reports one.
Without DETAILED profiling verbosity the JSON holds names only, with no tensors to follow: then a
ForeignNode in an engine built with a DLA core is "unknown", never guessed."""
from __future__ import annotations

import re
from dataclasses import dataclass

DLA, GPU, TRANSFER, UNKNOWN = "DLA", "GPU", "DLA transfer", "unknown"
_TRANSFER = re.compile(r" (to nvm|from nvm|copy finish)$")


@dataclass(frozen=True)
class Layer:
    name: str
    type: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


def _tensor_names(entries) -> tuple[str, ...]:
    names = []
    for e in entries or ():
        names.append(str(e.get("Name", "")) if isinstance(e, dict) else str(e))
    return tuple(names)


def parse_layers(info: dict | list) -> list[Layer]:
    """Layers from the inspector JSON: {"Layers": [...]} with dicts (DETAILED) or names (LAYER_NAMES_ONLY)."""
    raw = info.get("Layers", []) if isinstance(info, dict) else info
    layers = []
    for item in raw:
        if isinstance(item, str):
            layers.append(Layer(item, ""))
        else:
            layers.append(Layer(str(item.get("Name", "")), str(item.get("LayerType", "")),
                                _tensor_names(item.get("Inputs")), _tensor_names(item.get("Outputs"))))
    return layers


def _nvm_tensors(layers: list[Layer]) -> tuple[set[str], set[str]]:
    """(tensors written by `to nvm` layers, tensors read by `from nvm` layers)."""
    into, out_of = set(), set()
    for layer in layers:
        if layer.name.endswith(" to nvm"):
            into.update(layer.outputs)
        elif layer.name.endswith(" from nvm"):
            out_of.update(layer.inputs)
    return into, out_of


def classify(layers: list[Layer], dla_core: int | None) -> list[dict]:
    """[{"name", "type", "device"}] with device DLA, GPU, "DLA transfer" (DLA memory copies) or unknown."""
    into, out_of = _nvm_tensors(layers)
    detailed = any(layer.inputs or layer.outputs for layer in layers)
    out = []
    for layer in layers:
        if dla_core is None:
            device = GPU  # nothing runs on a DLA the build was not given
        elif _TRANSFER.search(layer.name):
            device = TRANSFER
        elif "dla" in layer.type.lower():
            device = DLA
        elif layer.name.startswith("{ForeignNode"):
            if into.intersection(layer.inputs) or out_of.intersection(layer.outputs):
                device = DLA
            else:
                device = GPU if detailed else UNKNOWN  # Myelin's fused GPU layer, or no tensors to tell
        else:
            device = GPU
        out.append({"name": layer.name, "type": layer.type, "device": device})
    return out


def counts(classified: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for layer in classified:
        out[layer["device"]] = out.get(layer["device"], 0) + 1
    return out
