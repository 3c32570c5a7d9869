#!/usr/bin/env bash
# Creates the events database if it is missing and applies schema.sql. Safe to run twice.
#
# Reads DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME from the environment, then from .env in
# the working directory for those not set (the environment wins). Needs psql.
# Exits non-zero with a one-line reason when the server is unreachable or refuses the login.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
schema="$here/schema.sql"
me=$(basename "$0")

fail() { echo "$me: $*" >&2; exit 1; }

# Load .env without overriding variables that are already set. The same rule as scripts/lib.sh's
# load_dotenv, written out here on purpose: this script runs on its own, mounted alone into the
# init container (docker-compose.yml) or copied to a server, where scripts/ is not there.
if [[ -f .env ]]; then
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        [[ $line =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || continue
        name=${BASH_REMATCH[2]} value=${BASH_REMATCH[3]}
        [[ -n ${!name+set} ]] && continue
        if [[ $value =~ ^\"(.*)\"$ || $value =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
        export "$name=$value"
    done < .env
fi

DB_HOST=${DB_HOST:-localhost}
DB_PORT=${DB_PORT:-5432}
DB_USER=${DB_USER:-postgres}
DB_NAME=${DB_NAME:-events}
[[ $DB_NAME =~ ^[A-Za-z_][A-Za-z0-9_$-]*$ ]] || fail "DB_NAME '$DB_NAME' is not a plain database name"
command -v psql >/dev/null || fail "psql not found: install the PostgreSQL client (Debian: apt-get install postgresql-client)"
[[ -f $schema ]] || fail "schema file $schema is missing"

export PGHOST=$DB_HOST PGPORT=$DB_PORT PGUSER=$DB_USER PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}
export PGPASSWORD=${DB_PASSWORD:-}
export PGAPPNAME=db_init_script

# psql's first error line, without the "psql: error: " prefix, as the one-line reason.
reason() { sed -n 's/^psql: error: //; s/^psql:[^:]*:[0-9]*: //; /./{p;q}' <<<"$1"; }

if ! out=$(psql -X -q -d postgres -tA -v ON_ERROR_STOP=1 \
        -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" 2>&1); then
    fail "cannot connect to PostgreSQL at $DB_HOST:$DB_PORT as $DB_USER: $(reason "$out")"
fi
if [[ $out != 1 ]]; then
    if ! err=$(psql -X -q -d postgres -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DB_NAME\"" 2>&1); then
        # Another run may have created it in the meantime.
        [[ $err == *"already exists"* ]] || fail "cannot create database $DB_NAME: $(reason "$err")"
    fi
    echo "$me: created database $DB_NAME"
fi

# The advisory lock serialises concurrent runs, so two of them never race on CREATE TABLE.
if ! err=$(psql -X -q -d "$DB_NAME" -v ON_ERROR_STOP=1 \
        -c "SELECT pg_advisory_lock(7423901)" -f "$schema" 2>&1 >/dev/null); then
    fail "cannot apply $schema to $DB_NAME: $(reason "$err")"
fi
echo "$me: schema applied to $DB_NAME at $DB_HOST:$DB_PORT"
