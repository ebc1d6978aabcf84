"""`edgefocal inspect OUTPUT`: what a build holds — artifacts, precisions, sizes, scores, gates, the preprocessing
an application must reproduce, class names and the TensorRT engine command (edgefocal/buildinfo.py)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="show what a build output holds (artifacts, gates, preprocessing, classes)",
                       description=__doc__)
    p.add_argument("output", type=Path, help="a build's output directory (or its manifest.json)")
    p.add_argument("--json", action="store_true", help="print the same facts as JSON")


def run(args: argparse.Namespace) -> int:
    from edgefocal import buildinfo

    info = buildinfo.summary(*buildinfo.read(args.output))
    print(json.dumps(info, indent=2) if args.json else buildinfo.to_text(info))
    return 0
