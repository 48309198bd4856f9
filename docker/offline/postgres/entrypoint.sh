#!/usr/bin/env bash
# The offline PostgreSQL image's entrypoint: Debian's PostgreSQL 15, set up on first start the way
# the official postgres image does it, from its environment variables:
#   POSTGRES_USER (superuser, default postgres), POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE
#   (required), POSTGRES_DB (default: the user's name), PGDATA (/var/lib/postgresql/data).
# Clients on the container network sign in with scram-sha-256; the command is `postgres [-c ...]`.
set -euo pipefail

if [[ "${1:-}" != postgres ]]; then
  exec "$@"
fi
shift

user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-${user}}"
if [[ -n "${POSTGRES_PASSWORD_FILE:-}" ]]; then
  password="$(cat "${POSTGRES_PASSWORD_FILE}")"
else
  password="${POSTGRES_PASSWORD:-}"
fi

if [[ ! -s "${PGDATA}/PG_VERSION" ]]; then
  if [[ -z "${password}" ]]; then
    echo "postgres: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE: the database is never left open" >&2
    exit 2
  fi
  pwfile="$(mktemp)"
  printf '%s' "${password}" > "${pwfile}"
  initdb --username="${user}" --pwfile="${pwfile}" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 -D "${PGDATA}"
  rm -f "${pwfile}"
  printf 'host all all all scram-sha-256\n' >> "${PGDATA}/pg_hba.conf"
  if [[ "${db}" != postgres ]]; then
    # A private server on the socket only, to create the database, as the official image does.
    pg_ctl -D "${PGDATA}" -o "-c listen_addresses=''" -w start
    psql -v ON_ERROR_STOP=1 --username="${user}" --dbname=postgres \
      -c "CREATE DATABASE \"${db}\" OWNER \"${user}\""
    pg_ctl -D "${PGDATA}" -m fast -w stop
  fi
  echo "postgres: initialised ${PGDATA} (user ${user}, database ${db})"
fi

exec postgres -D "${PGDATA}" -c listen_addresses='*' "$@"
