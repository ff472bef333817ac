#!/usr/bin/env bash
# Snakemake and jsonschema, with what they need, as wheels for CPython 3.12 on x86-64 Linux in
# .whl/ (git-ignored): the lent GPU machine has Python 3.12, CuPy, NumPy, pandas, pyarrow and
# matplotlib but neither of them, and no network. bench/device_check.sh installs them there
# (pip --no-index --no-deps --target) when the device tool's call carries .whl.
#   bash bench/device_wheels.sh          with the README's .venv if there is one, else python3
#   PYTHON=/path/to/python bash bench/device_wheels.sh
# Any Python with pip and the network will do: the versions are those it has installed (the
# tested ones, in the README's venv), else the newest that pyproject.toml allows. Wheels built
# for this Python's ABI are swapped for CPython 3.12 builds; pure ones serve any Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
"$PY" -m pip --version >/dev/null || { echo "$PY has no pip: name another with PYTHON=..." >&2; exit 1; }
# PuLP (36 MB installed) is only Snakemake's ILP scheduler's solver: without it Snakemake says
# so and schedules greedily, which is all `--cores 1` needs. Leaving it out keeps the carried
# tree small (the device tool carries 64 MiB in all).
LEAVE_OUT="pulp"

requirement() {  # requirement NAME: NAME==the installed version, else the range pyproject.toml gives
  local version
  if version=$("$PY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null); then
    echo "$1==$version"
  else
    grep -o "\"$1[<>=!~][^\"]*\"" pyproject.toml | head -1 | tr -d '"' || echo "$1"
  fi
}
requirements=("$(requirement snakemake)" "$(requirement jsonschema)")
echo "wheels for: ${requirements[*]} (resolved by $("$PY" --version 2>&1) at $PY)"

built=$(mktemp -d)
trap 'rm -rf "$built"' EXIT
# Dependencies resolved here, sdists built into wheels (some have no wheel at all).
"$PY" -m pip wheel -q -w "$built" "${requirements[@]}"
rm -rf .whl
mkdir .whl
for wheel in "$built"/*.whl; do
  file=$(basename "$wheel")
  name=$(echo "$file" | cut -d- -f1 | tr 'A-Z_' 'a-z-')
  version=$(echo "$file" | cut -d- -f2)
  case " $LEAVE_OUT " in *" $name "*) continue ;; esac
  case "$file" in
    *-none-any.whl | *-abi3-*.whl | *-cp312-cp312-*.whl) cp "$wheel" .whl/ ;;  # any Python 3 (or 3.12 already)
    *)  # built for this Python: the CPython 3.12 build instead
      "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
        -d .whl "$name==$version"
      ;;
  esac
done
echo "$(ls .whl | wc -l) wheels in .whl, $(du -sh .whl | cut -f1) (left out: $LEAVE_OUT); carry .whl"
