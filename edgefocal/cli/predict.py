"""`edgefocal predict ARTIFACT IMAGE...`: top-k classes (with the manifest's class names) of image files by a
built artifact this machine can run, preprocessed as the manifest says (edgefocal/predict.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="classify images with a built artifact (top-5 with class names)",
                       description=__doc__)
    p.add_argument("artifact", type=Path, help="an artifact of a build output, e.g. build/edgefocal/openvino/model_int8.xml")
    p.add_argument("images", type=Path, nargs="+", help="image files, or directories of them")
    p.add_argument("--top", type=int, default=5, help="how many classes per image (5)")
    p.add_argument("--threads", type=int, help="CPU threads for the runtime (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON list of {image, top: [{class, name, probability}]}")


def run(args: argparse.Namespace) -> int:
    from edgefocal.errors import BadInput
    from edgefocal.predict import predict

    if args.top < 1:
        raise BadInput(f"--top {args.top} asks for no classes", hint="pass --top 1 or more")
    predictions = predict(args.artifact, args.images, args.top, args.threads)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
        return 0
    for p in predictions:
        print(f"{p.image}: " + "  ".join(f"{rank}. {name} ({index}) {prob:.1%}"
                                         for rank, (index, name, prob) in enumerate(p.top, 1)))
    return 0
