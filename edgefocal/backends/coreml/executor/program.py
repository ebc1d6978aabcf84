"""Reading a saved .mlpackage: its ML program (through coremltools' MIL-proto loader, which also reads the
weight.bin blob) and the interface facts a runner needs (input kind, batch, class labels)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgefocal._deps import require
from edgefocal.errors import BadInput


@dataclass
class ProgramInfo:
    """What a caller must know to feed the program and read its result."""

    path: Path
    input_name: str
    input_shape: tuple  # declared (N, C, H, W); a ranged batch appears as None
    image_input: bool  # True: the program takes pixel values 0..255 (Core ML image type)
    color_layout: str | None  # "GRAYSCALE", "RGB", "BGR" for image inputs
    output_names: list[str]
    classifier: bool  # True: the program ends in `classify`; the executor returns its probabilities input
    class_labels: list[str] = field(default_factory=list)
    specification_version: int = 0
    batch_range: tuple[int, int] | None = None  # (lower, upper) of a ranged batch

    @property
    def declared_batch(self) -> int | None:
        return self.input_shape[0] if isinstance(self.input_shape[0], int) else None


def _load_spec(path: Path):
    ct = require("coremltools", "coreml")
    path = Path(path)
    if not path.exists():
        raise BadInput(f"Core ML model {path} does not exist", hint="pass the path of a saved .mlpackage")
    if path.suffix != ".mlpackage" or not path.is_dir():
        raise BadInput(f"{path} is not an .mlpackage directory",
                       hint="the executor runs ML programs saved as .mlpackage (convert_to='mlprogram')")
    try:
        mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    except Exception as e:  # coremltools raises plain Exceptions for broken packages
        raise BadInput(f"{path} is not a readable .mlpackage ({type(e).__name__}: {str(e)[:160]})",
                       hint="re-create it with edgefocal or coremltools; check the package is complete") from e
    spec = mlmodel.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise BadInput(f"{path} holds a '{spec.WhichOneof('Type')}' model, not an ML program",
                       hint="convert with convert_to='mlprogram' (neural-network models are not supported)")
    return mlmodel, spec


def read_program(path: Path):
    """(MIL program, ProgramInfo) of a saved .mlpackage."""
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load

    mlmodel, spec = _load_spec(path)
    try:
        prog = milproto_load(spec, spec.specificationVersion, mlmodel.weights_dir)
    except Exception as e:
        raise BadInput(f"the ML program in {path} could not be read ({type(e).__name__}: {str(e)[:160]})",
                       hint="re-create the package; the executor reads programs written by coremltools ≥ 7") from e
    main = prog.functions.get("main")
    if main is None:
        raise BadInput(f"the ML program in {path} has no 'main' function", hint="re-create the package")
    desc = spec.description
    if len(desc.input) != 1:
        raise BadInput(f"{path} has {len(desc.input)} inputs; the executor runs single-input classifiers",
                       hint="export the model with one image/tensor input")
    feat = desc.input[0]
    kind = feat.type.WhichOneof("Type")
    var = main.inputs[feat.name]
    shape = tuple(int(d) if isinstance(d, int) or hasattr(d, "__index__") else None for d in var.shape)
    batch_range = None
    if kind == "multiArrayType" and feat.type.multiArrayType.WhichOneof("ShapeFlexibility") == "shapeRange":
        r = feat.type.multiArrayType.shapeRange.sizeRanges[0]
        batch_range = (int(r.lowerBound), int(r.upperBound))
    elif kind == "imageType" and shape[0] is None:
        batch_range = (1, -1)
    labels: list[str] = []
    classifier = any(op.op_type == "classify" for op in main.operations)
    if classifier:
        labels = [str(c) for c in next(op for op in main.operations if op.op_type == "classify").inputs["classes"].val]
    info = ProgramInfo(
        path=Path(path),
        input_name=feat.name,
        input_shape=shape,
        image_input=kind == "imageType",
        color_layout=(feat.type.imageType.ColorSpace.Name(feat.type.imageType.colorSpace) if kind == "imageType" else None),
        output_names=[o.name for o in desc.output],
        classifier=classifier,
        class_labels=labels,
        specification_version=int(spec.specificationVersion),
        batch_range=batch_range,
    )
    return prog, info


def op_census(prog) -> dict[str, int]:
    """How many of each op the main function holds (consts included), most frequent first."""
    counts = Counter(op.op_type for op in prog.functions["main"].operations)
    return dict(counts.most_common())


def to_program_input(x, image_input: bool, mean, std):
    """Normalized NCHW (what the pipeline feeds) → what the program takes (pixels 0..255 for an image input,
    whose normalization edgefocal folds into the program)."""
    import numpy as np

    if not image_input:
        return np.asarray(x, np.float32)
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return (np.asarray(x, np.float32) * s + m) * 255.0
