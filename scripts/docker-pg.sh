#!/usr/bin/env bash
# The PostgreSQL container of `make` when a Docker engine answers: start | stop | status | clean.
#
# Runs postgres/compose.yml as the compose project events-dev (COMPOSE_PROJECT_NAME overrides).
# Credentials and DB_PORT (default 5433) come from .env through the environment; the data lives
# in a named volume that survives `stop`; `clean` removes the container and the volume.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings

file=$repo/postgres/compose.yml
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-events-dev}

# compose_cmd: the compose command of this machine, on postgres/compose.yml.
find_compose() {
    if docker compose version >/dev/null 2>&1; then
        compose_cmd=(docker compose -f "$file")
    elif command -v docker-compose >/dev/null; then
        compose_cmd=(docker-compose -f "$file")
    else
        die "neither 'docker compose' nor 'docker-compose' is installed (Debian/Ubuntu:" \
            "apt-get install docker-compose-plugin), or run the local cluster with EVENTS_DB=local"
    fi
}

compose() {
    find_compose
    "${compose_cmd[@]}" "$@"
}

container_running() {
    [[ -n $(compose ps -q --status running db 2>/dev/null || compose ps -q db 2>/dev/null) ]]
}

start() {
    docker_engine || die "no Docker engine answers ('docker info' fails)"
    [[ -n ${DB_PASSWORD:-} ]] || die "DB_PASSWORD is not set: set it in .env (see .env.template)"
    if ! container_running && port_in_use "$DB_PORT"; then
        die "port $DB_PORT on 127.0.0.1 is already in use by another program (another PostgreSQL?):" \
            "stop it, or set DB_PORT in .env to a free port"
    fi
    say "starting the PostgreSQL container ($COMPOSE_PROJECT_NAME, postgres/compose.yml) on 127.0.0.1:$DB_PORT"
    compose up -d db
    require_psql
    wait_for_db 90
}

stop() {
    docker_engine || return 0
    say "stopping the PostgreSQL container ($COMPOSE_PROJECT_NAME)"
    # PostgreSQL gets 30 s for a clean shutdown, then SIGKILL (crash recovery at the next start);
    # an engine that does not answer at all is not waited for past 60 s.
    local status=0
    find_compose
    timeout 60 "${compose_cmd[@]}" stop --timeout 30 db || status=$?
    ((status == 0)) || die "the PostgreSQL container did not stop (exit $status; 124: no answer within 60 s):" \
        "see 'docker compose -p $COMPOSE_PROJECT_NAME -f postgres/compose.yml ps', or kill it there with 'kill db'"
}

status() {
    docker_engine || { echo "Docker PostgreSQL: no Docker engine answers"; return 3; }
    compose ps db
}

clean() {
    docker_engine || return 0
    compose down -v
    say "removed the PostgreSQL container and its volume ($COMPOSE_PROJECT_NAME)"
}

run_command "start stop status clean" "${1:-}"
