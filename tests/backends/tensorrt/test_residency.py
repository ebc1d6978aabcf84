"""DLA/GPU residency from the engine inspector's JSON. The layer lists are shaped like TensorRT's
(DETAILED verbosity: Name, LayerType, Inputs/Outputs with tensor names; lower verbosity: names only),
with the `to nvm`/`from nvm`/`copy finish` layers TensorRT puts around a DLA loadable."""
from __future__ import annotations

from edgefocal.backends.tensorrt.residency import DLA, GPU, TRANSFER, UNKNOWN, classify, counts, parse_layers


def _layer(name, ltype, inputs, outputs):
    return {"Name": name, "LayerType": ltype, "Inputs": [{"Name": t, "Location": "Device"} for t in inputs],
            "Outputs": [{"Name": t, "Location": "Device"} for t in outputs]}


# A DLA loadable for the backbone, Myelin's fused GPU layer for the head: both named {ForeignNode[...]}
DLA_ENGINE = {"Layers": [
    _layer("input to nvm", "Reformat", ["input"], ["input_nvm"]),
    _layer("{ForeignNode[/stem/proj/Conv.../layers.3/Add]}", "ForeignNode", ["input_nvm"], ["feat_nvm"]),
    _layer("feat from nvm", "Reformat", ["feat_nvm"], ["feat"]),
    _layer("input copy finish", "Reformat", ["input"], []),
    _layer("{ForeignNode[/head/norm/LayerNormalization.../head/fc/Gemm]}", "Myelin", ["feat"], ["logits"]),
], "Bindings": ["input", "logits"]}

GPU_ENGINE = {"Layers": [
    _layer("{ForeignNode[/stem/proj/Conv.../head/fc/Gemm]}", "Myelin", ["input"], ["logits"]),
]}


def test_dla_loadable_is_told_from_myelin_by_its_nvm_transfers():
    layers = classify(parse_layers(DLA_ENGINE), dla_core=0)
    assert [layer["device"] for layer in layers] == [TRANSFER, DLA, TRANSFER, TRANSFER, GPU]
    assert counts(layers) == {DLA: 1, GPU: 1, TRANSFER: 3}


def test_foreign_node_on_gpu_is_not_dla_even_with_a_dla_core():
    """The defect this module fixes: every {ForeignNode...} counted as DLA whenever a DLA core was set."""
    assert counts(classify(parse_layers(GPU_ENGINE), dla_core=1)) == {GPU: 1}


def test_without_dla_core_everything_is_gpu():
    assert counts(classify(parse_layers(DLA_ENGINE), dla_core=None)) == {GPU: 5}


def test_layer_type_naming_dla_counts_as_dla():
    info = {"Layers": [_layer("{ForeignNode[a...b]}", "DLA", ["x"], ["y"]),
                       _layer("conv", "CaskConvolution", ["y"], ["z"])]}
    assert counts(classify(parse_layers(info), dla_core=0)) == {DLA: 1, GPU: 1}


def test_names_only_json_leaves_foreign_nodes_unknown_with_dla():
    names = {"Layers": [layer["Name"] for layer in DLA_ENGINE["Layers"]]}
    layers = classify(parse_layers(names), dla_core=0)
    assert [layer["device"] for layer in layers] == [TRANSFER, UNKNOWN, TRANSFER, TRANSFER, UNKNOWN]
    assert counts(classify(parse_layers(names), dla_core=None)) == {GPU: 5}


def test_trtexec_layer_info_list_form():
    """trtexec --exportLayerInfo writes the same JSON; a bare list of layers is accepted too."""
    layers = classify(parse_layers(DLA_ENGINE["Layers"]), dla_core=0)
    assert layers[1] == {"name": "{ForeignNode[/stem/proj/Conv.../layers.3/Add]}", "type": "ForeignNode", "device": DLA}
