#!/usr/bin/env bash
# The Debian packages the test suite drives, installed when missing (run by scripts/test):
# chromium (the console's browser tests, tests/e2e/test_console.py) and docker-compose
# (tests/test_compose.py parses docker-compose.yml with it; no Docker engine is needed).
missing=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v docker-compose >/dev/null || missing+=(docker-compose)
if [ "${#missing[@]}" -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "scripts/test needs ${missing[*]} (not Debian: install them with your package manager)" >&2
    exit 1
  fi
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} with apt-get (the suite's browser and compose tests)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
