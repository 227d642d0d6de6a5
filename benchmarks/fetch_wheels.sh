#!/usr/bin/env bash
# Download the wheels of benchmarks/h200_wheels.txt (Python 3.12, x86-64 Linux) into .whl/, for
# a GPU machine without package access: benchmarks/h200_cifar10.sh installs them from there.
# A package published only as a source archive (pure Python) is built into a wheel here.
set -euo pipefail
mkdir -p .whl
for req in $(grep -v '^#' benchmarks/h200_wheels.txt); do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$req" 2>/dev/null ||
    python3 -m pip wheel -q --no-deps -w .whl "$req"
done
ls .whl | wc -l
du -sh .whl
