#!/usr/bin/env bash
# `make status`: what runs, and what the database holds (count by type, the newest rows): read
# whenever the database answers, whether `make` runs or not (psql).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
load_settings
require_psql

if pid=$(live_pid "$run_dir/suite.pid"); then
    services=''
    for name in consumer propagator; do
        if p=$(live_pid "$run_dir/$name.pid"); then services+="${services:+, }$name pid $p"; fi
    done
    echo "make is running (pid $pid; ${services:-no service yet}; database: $(cat "$run_dir/db-mode" 2>/dev/null || echo '?'))"
else
    echo "make is not running from $state"
fi

if ! out=$(db_psql -d "$DB_NAME" -qtA -c 'SELECT count(*) FROM events' 2>&1); then
    out=${out#psql: error: }
    die "the database $DB_NAME at $DB_HOST:$DB_PORT does not answer: ${out%%$'\n'*}" \
        "('make' starts it, and so does 'make psql' for a look at the rows)"
fi
echo "events stored in $DB_NAME at $DB_HOST:$DB_PORT: $out"
if ((out > 0)); then
    db_psql -d "$DB_NAME" -q -P footer=off -c \
        "SELECT event_type, count(*) AS events, max(received_at)::timestamp(0) AS latest
           FROM events GROUP BY event_type ORDER BY count(*) DESC, event_type"
    echo "the newest rows:"
    db_psql -d "$DB_NAME" -q -P footer=off -c \
        "SELECT id, event_type, left(event_payload, 40) AS event_payload,
                received_at::timestamp(3) AS received_at, idempotency_key
           FROM events ORDER BY id DESC LIMIT 5"
fi
