#!/usr/bin/env bash
# Creates the events database if it is missing and applies schema.sql. Safe to run twice.
#
# Reads DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME from the environment, then from .env in
# the working directory for those not set (the environment wins). Needs psql (libpq 10 or later).
# DB_HOST may list several hosts (db1,db2) and DB_PORT one port for all or one per host
# (5432,5433), as the consumer takes them: the schema goes to the first host that takes writes
# (the primary; libpq's target_session_attrs=read-write), standbys are skipped.
# Exits non-zero with a one-line reason when no host is reachable, none takes writes, or the
# login is refused.
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

# The hosts as host:port pairs for the messages (db1:5432,db2:5433); one port serves every host.
[[ $DB_HOST == *,,* || $DB_HOST == ,* || $DB_HOST == *, ]] \
    && fail "DB_HOST '$DB_HOST' has an empty host: separate host names with single commas"
IFS=, read -r -a hosts <<<"$DB_HOST"
IFS=, read -r -a ports <<<"$DB_PORT"
(( ${#hosts[@]} > 0 )) || fail "DB_HOST is empty: name a host, or several separated by commas"
if (( ${#ports[@]} != 1 && ${#ports[@]} != ${#hosts[@]} )); then
    fail "DB_PORT '$DB_PORT' has ${#ports[@]} ports for ${#hosts[@]} hosts in DB_HOST '$DB_HOST': give one port for all or one per host"
fi
targets='' pghost='' pgport=''
for i in "${!hosts[@]}"; do
    host=${hosts[i]// }
    [[ -n $host ]] || fail "DB_HOST '$DB_HOST': host $((i + 1)) is empty"
    port=${ports[i]:-${ports[0]}}
    port=${port// }
    if ! [[ $port =~ ^[0-9]{1,5}$ ]] || (( 10#$port < 1 || 10#$port > 65535 )); then
        fail "DB_PORT '$DB_PORT': '$port' is not a port (1 to 65535)"
    fi
    targets+=${targets:+,}$host:$port
    pghost+=${pghost:+,}$host
    pgport+=${pgport:+,}$port
done

# libpq takes the same lists, spaces removed; one port per host here, so no doubt remains.
export PGHOST=$pghost PGPORT=$pgport PGUSER=$DB_USER PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5}
export PGTARGETSESSIONATTRS=read-write
export PGPASSWORD=${DB_PASSWORD:-}
export PGAPPNAME=db_init_script

# psql's first error line, without the "psql: error: " prefix, as the one-line reason.
reason() { sed -n 's/^psql: error: //; s/^psql:[^:]*:[0-9]*: //; /./{p;q}' <<<"$1"; }

# psql sets HOST and PORT to the host it connected to: the primary. The later steps go to it
# alone: a standby earlier in the list may not have replayed a new database yet, and libpq does
# not try the next host after a refused login or a missing database.
if ! out=$(psql -X -q -d postgres -tA -v ON_ERROR_STOP=1 \
        -c "SELECT count(*) FROM pg_database WHERE datname = '$DB_NAME'" -c '\echo :HOST :PORT' 2>&1); then
    fail "cannot connect to a PostgreSQL primary (read-write) at $targets as $DB_USER: $(reason "$out")"
fi
{ read -r exists; read -r primary_host primary_port; } <<<"$out"
primary=$primary_host:$primary_port
export PGHOST=$primary_host PGPORT=$primary_port
if [[ $exists != 1 ]]; then
    if ! err=$(psql -X -q -d postgres -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DB_NAME\"" 2>&1); then
        # Another run may have created it in the meantime.
        [[ $err == *"already exists"* ]] || fail "cannot create database $DB_NAME: $(reason "$err")"
    fi
    echo "$me: created database $DB_NAME at $primary"
fi

# Retention: a database made by an earlier version gets the index on received_at here, built
# CONCURRENTLY so that a large events table keeps taking writes while it is built (schema.sql's
# CREATE INDEX IF NOT EXISTS would block them). A build that was interrupted leaves an INVALID
# index behind, which is dropped and built again, unless another run is building it right now
# (pg_stat_progress_create_index). A new database has no table yet: schema.sql creates both;
# a current one has the index, and no statement runs on it. Not under the schema's advisory
# lock: a concurrent build waits for every older snapshot, a run waiting for that lock
# included, which would be a deadlock.
if ! err=$(psql -X -q -d "$DB_NAME" -v ON_ERROR_STOP=1 2>&1 >/dev/null <<'SQL'
SELECT 'DROP INDEX CONCURRENTLY events_received_at'
    FROM pg_index JOIN pg_class ON pg_class.oid = pg_index.indexrelid
    WHERE pg_class.oid = to_regclass('events_received_at') AND NOT pg_index.indisvalid
      AND NOT EXISTS (SELECT FROM pg_stat_progress_create_index p WHERE p.index_relid = pg_class.oid) \gexec
SELECT 'CREATE INDEX CONCURRENTLY IF NOT EXISTS events_received_at ON events (received_at)'
    WHERE to_regclass('events') IS NOT NULL AND to_regclass('events_received_at') IS NULL \gexec
SQL
); then
    fail "cannot build the index on events.received_at in $DB_NAME: $(reason "$err")"
fi

# The advisory lock serialises concurrent runs, so two of them never race on CREATE TABLE.
# Notices ("relation already exists") are silenced so the one-line reason is the real error.
if ! err=$(psql -X -q -d "$DB_NAME" -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning" \
        -c "SELECT pg_advisory_lock(7423901)" -f "$schema" 2>&1 >/dev/null); then
    fail "cannot apply $schema to $DB_NAME: $(reason "$err")"
fi
echo "$me: schema applied to $DB_NAME at $primary (the primary of $targets)"
