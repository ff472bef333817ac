#!/usr/bin/env bash
# Snakemake and what it needs, as wheels in .whl/ (git-ignored), for a lent GPU machine that
# has Python 3.12, CuPy, NumPy, pandas, pyarrow and matplotlib but no Snakemake and no
# network. Wheels compiled for this machine's Python are swapped for CPython 3.12 builds.
# There: pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl, then
# PYTHONPATH=/tmp/site:src bash bench/gpu.sh (the device tool's README has the details).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(python3 -c "import snakemake; print(snakemake.__version__)")
rm -rf .whl
python3 -m pip wheel -q "snakemake==$version" -w .whl
for wheel in .whl/*-cp3*.whl; do
  case "$wheel" in *-abi3-*) continue ;; esac  # stable ABI: any CPython 3 will do
  name_version=$(basename "$wheel" | cut -d- -f1,2)
  rm "$wheel"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
      -d .whl "${name_version%-*}==${name_version#*-}"
done
ls .whl | grep -c . | xargs echo "wheels in .whl:"
du -sh .whl
