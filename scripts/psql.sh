#!/usr/bin/env bash
# `make psql`: psql on the database that `make` starts, running or not.
#
# Interactive without arguments; `make psql SQL='select ...'` runs that one command and exits
# (psql -c; the exit status is psql's). When the database does not answer and `make` is not
# running, it starts it for the session (the local cluster or the container, as `make` would,
# creating the cluster and the schema on first use) and stops it again when psql ends.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
ensure_dotenv
load_settings
require_local_db_host
require_psql

answers() { db_psql -d postgres -qtA -c 'SELECT 1' >/dev/null 2>&1; }

started=
stop_again() {
    # Only the database this script started, and only when no `make` took it over meanwhile.
    if [[ -n $started ]] && ! live_pid "$run_dir/suite.pid" >/dev/null; then
        "scripts/$started-pg.sh" stop >&2 || true
    fi
}

if ! answers; then
    if pid=$(live_pid "$run_dir/suite.pid"); then
        die "make (pid $pid) is running but its database at $DB_HOST:$DB_PORT does not answer yet: try again in a moment"
    fi
    mode=$(cat "$run_dir/db-mode" 2>/dev/null || choose_db_mode)
    say "the database is not running: starting it for this session ($mode); it stops when psql ends"
    trap stop_again EXIT
    started=$mode
    "scripts/$mode-pg.sh" start >&2
    wait_for_db 30
    ./db_init_script.sh >&2
fi

if [[ -n ${SQL:-} ]]; then
    db_psql -d "$DB_NAME" -c "$SQL"
else
    db_psql -d "$DB_NAME"
fi
