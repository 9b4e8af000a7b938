#!/usr/bin/env bash
# Installs the libraries benchmarks/ compares against (higher; learn2learn 0.2.0) into the active
# virtual environment (or .venv), without touching torch:
#   - every install is --no-deps: learn2learn asks for torchvision and gym, and a resolver that
#     sees torchvision replaces the CPU torch with a multi-GB CUDA build;
#   - learn2learn 0.2.0 ships Cython-generated .c files that do not compile on Python 3.11, so
#     they are regenerated from the .pyx sources with the installed Cython 3 before building.
# benchmarks/thirdparty.py imports learn2learn's MAML without its __init__ (which imports
# torchvision). Idempotent: a library already installed is left as it is.
#   benchmarks/install_thirdparty.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VIRTUAL_ENV:-}" ]; then PY=python; else PY=.venv/bin/python; fi

installed() { "$PY" -m pip show --quiet "$1" >/dev/null 2>&1; }

# Build tools in the environment itself: without build isolation, learn2learn's setup_requires
# (cython) is met by them, instead of easy_install compiling an old Cython from source.
if ! installed cython; then "$PY" -m pip install --quiet "cython>=3.0"; fi
if ! "$PY" -c "import setuptools.command.bdist_wheel" 2>/dev/null && ! installed wheel; then
  "$PY" -m pip install --quiet wheel  # setuptools before 70.1 builds wheels only with it
fi
if ! installed higher; then "$PY" -m pip install --quiet --no-deps "higher==0.2.1"; fi
if installed learn2learn; then
  echo "learn2learn already installed"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$PY" -m pip download --quiet --no-deps --no-build-isolation --no-binary :all: "learn2learn==0.2.0" -d "$work"
  tar -xzf "$work"/learn2learn-0.2.0.tar.gz -C "$work"
  src="$work/learn2learn-0.2.0"
  for pyx in "$src"/learn2learn/data/*.pyx; do
    "$PY" -m cython -3 "$pyx" -o "${pyx%.pyx}.c"
  done
  "$PY" -m pip install --quiet --no-build-isolation --no-deps "$src"
fi
"$PY" benchmarks/thirdparty.py
"$PY" -c "import torch; print('torch', torch.__version__, '(unchanged)')"
