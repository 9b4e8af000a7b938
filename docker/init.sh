#!/bin/sh
# The one-shot `init` service of docker-compose.yml, run before the API, the workers and Flower
# start: the database schema, Flower's basic-auth credentials when FLOWER_BASIC_AUTH is not set
# (made once, kept in the data volume, mode 0600), then the first API key. What it makes is
# printed once, here (`docker compose logs init` shows it); later runs find both and make none.
set -eu
fewshot db upgrade
flower_auth="${FEWSHOT_DATA_DIR:-/data}/flower/basic_auth"
if [ -z "${FLOWER_BASIC_AUTH:-}" ] && [ ! -s "$flower_auth" ]; then
  mkdir -p "$(dirname "$flower_auth")"
  umask 077
  printf 'admin:%s\n' "$(python -c 'import secrets; print(secrets.token_urlsafe(18))')" > "$flower_auth.tmp"
  mv "$flower_auth.tmp" "$flower_auth"
  echo "Flower's basic auth (made once, kept in the data volume at $flower_auth): $(cat "$flower_auth")"
fi
fewshot keys create --if-none --name default
