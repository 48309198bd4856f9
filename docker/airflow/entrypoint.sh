#!/usr/bin/env bash
# The Airflow image's entrypoint, as the official image behaves for the lab's commands:
# `api-server`, `scheduler --skip-serve-logs`, ... run `airflow <command>`; a command that is a
# program on PATH (bash, python, airflow itself) runs as it is.
set -euo pipefail
if [[ $# -gt 0 ]] && command -v -- "$1" > /dev/null 2>&1; then
  exec "$@"
fi
exec airflow "$@"
