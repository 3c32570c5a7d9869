#!/usr/bin/env bash
# `make status`: what runs, and how many events the database holds, by type (psql).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings
require_psql

if pid=$(live_pid "$run_dir/suite.pid"); then
    services=()
    for name in consumer propagator; do
        if p=$(live_pid "$run_dir/$name.pid"); then services+=("$name pid $p"); fi
    done
    echo "make is running (pid $pid; $(IFS=,; echo "${services[*]:-no service yet}"); database: $(cat "$run_dir/db-mode" 2>/dev/null || echo '?'))"
else
    echo "make is not running from $state"
fi

if ! out=$(db_psql -d "$DB_NAME" -qtA -c 'SELECT count(*) FROM events' 2>&1); then
    die "cannot count events in $DB_NAME at $DB_HOST:$DB_PORT: ${out#psql: error: }" \
        "(is the database running? 'make' starts it)"
fi
echo "events stored in $DB_NAME at $DB_HOST:$DB_PORT: $out"
if ((out > 0)); then
    db_psql -d "$DB_NAME" -q -P footer=off -c \
        "SELECT event_type, count(*) AS events, max(received_at)::timestamp(0) AS latest
           FROM events GROUP BY event_type ORDER BY count(*) DESC, event_type"
fi
