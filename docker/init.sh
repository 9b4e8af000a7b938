#!/bin/sh
# The one-shot `init` service of docker-compose.yml, run before the API and the workers start:
# the database schema, then the first API key. The key is printed once, here, on the last line
# (`docker compose logs init` shows it); later runs find a live key and create none.
set -eu
fewshot db upgrade
fewshot keys create --if-none --name default
