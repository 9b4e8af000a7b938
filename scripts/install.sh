# Sourced by scripts/serve and scripts/test: a virtual environment with fewshot installed.
# $1 is the extra to install ("" or "[test]").
set -euo pipefail
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
source .venv/bin/activate
stamp=.venv/.fewshot-installed$1
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  # torch first and pinned, so that no resolver reaches for a multi-GB CUDA build.
  python -m pip install --quiet "torch==2.13.0"
  python -m pip install --quiet -e ".$1"
  touch "$stamp"
fi
