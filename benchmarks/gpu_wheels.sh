#!/usr/bin/env bash
# Wheels that benchmarks/gpu_reference.py needs on the lent GPU machine and that its image lacks (read from
# the device's KINDS.md package list): pydantic and its pieces (edgefocal's recipes), nncf and the two of its
# needs missing there (edgefocal's TensorRT Q/DQ producer), polygraphy (engine --compare). CPython 3.12,
# x86-64, about 4 MB. Run from the root of the checkout the device call sends; it prints the call to make.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 typing_extensions==4.16.0 \
  nncf==3.4.0 openvino-telemetry==2025.2.0 pydot==4.0.1 polygraphy==0.53.6
ls -l .whl
cat <<'CALL'
device run, carry [".whl"], timeout_s 420:
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; PYTHONUNBUFFERED=1 timeout 390 python3 benchmarks/gpu_reference.py 2>&1 | tee $OUT/log.txt; rc=${PIPESTATUS[0]}; cp benchmarks/gpu.md $OUT/; exit $rc
then copy gpu.md from the call's files to benchmarks/gpu.md and commit it (exit 1: a section failed, and says why in the file).
CALL
