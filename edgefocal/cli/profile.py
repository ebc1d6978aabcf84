"""`edgefocal profile ARTIFACT`: where a built artifact's time goes, per FocalNet part and per op kind, from its
runtime's own per-op profiler, against the wall-clock time of its verifying runner measured run for run beside it
(edgefocal/verify/profile.py); the precision each kernel read, the MAC ops' share and rate. Writes profile.json."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="where an artifact's time goes, per FocalNet part and op kind (profile.json)",
                       description=__doc__)
    p.add_argument("artifact", type=Path, help="an artifact of a build output, e.g. build/edgefocal/openvino/model_int8.xml")
    p.add_argument("--threads", type=int, help="CPU threads for the runtime (default: all)")
    p.add_argument("--batch", type=int, default=1, help="batch size to profile at (1)")
    p.add_argument("--runs", type=int, default=20, help="profiled and timed runs, after 3 warmup runs (20)")
    p.add_argument("--output", "-o", type=Path, default=Path("profile.json"), help="where to write it (profile.json)")


def run(args: argparse.Namespace) -> int:
    from edgefocal.backends import backend_of
    from edgefocal.outputs import write_file_atomically
    from edgefocal.predict import check_unchanged, find_artifact
    from edgefocal.verify.profile import document, profile, refuse_unprofilable, text

    for flag, value in (("--batch", args.batch), ("--runs", args.runs), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise _bad(f"{flag} {value} is not a positive count", f"pass {flag} 1 or more")
    built = find_artifact(args.artifact)
    backend = backend_of(built.entry)
    refuse_unprofilable(backend, args.artifact)  # before hashing a large artifact for nothing
    check_unchanged(built)
    shape = (args.batch, *built.manifest["model"]["data_config"]["input_size"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)  # timing, not accuracy: any input
    result = profile(backend, built.path, built.entry["precision"], x, args.threads, args.runs,
                     label=built.entry.get("label", ""))
    write_file_atomically(args.output, json.dumps(document([result]), indent=1) + "\n")
    print("\n".join(text(result)))
    print(f"wrote {args.output}")
    return 0


def _bad(message: str, hint: str):
    from edgefocal.errors import BadInput

    return BadInput(f"edgefocal profile: {message}", hint=hint)
