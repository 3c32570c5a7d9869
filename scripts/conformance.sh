#!/usr/bin/env bash
# `make conformance`: the live consumer against its own OpenAPI document (openapi.yaml), checked
# by a real fuzzer (schemathesis), then the table against what the consumer acknowledged.
#
# A throwaway PostgreSQL (lib.sh's start_cluster), the schema applied by db_init_script.sh, and
# schemathesis (pinned, installed with pip into target/conformance-venv, reused when present)
# running every check on every operation, in the phases examples, coverage (boundary and invalid
# values), fuzzing (valid and invalid requests) and stateful (not applicable here: the document
# has no links between operations), twice: against a release consumer with the defaults, then
# against one with consumer.auth_token set, whose document requires the bearer token. Any failed
# check fails the run. Then the rows in `events` must equal the events acknowledged as created:
# the 201 answers of POST /event plus the "created" results of POST /events, counted from the
# answers schemathesis recorded (its HAR reports), and the consumers' own
# event_consumer_events_stored_total must agree.
#
# Settings (environment): CONFORMANCE_MAX_EXAMPLES (100: test cases per operation and phase, about
# 800 in all), CONFORMANCE_SECONDS (600: the bound on each schemathesis run), CONFORMANCE_SEED
# (random; printed, so a failing run can be repeated), CONFORMANCE_KEEP=1 keeps the work
# directory (kept on a failure, not on Ctrl-C: consumer logs, schemathesis logs and reports).
set -euo pipefail
me=conformance.sh
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly schemathesis_version=4.32.5
max_examples=${CONFORMANCE_MAX_EXAMPLES:-100}
seconds=${CONFORMANCE_SECONDS:-600}
seed=${CONFORMANCE_SEED:-$((RANDOM * 32768 + RANDOM))}
for n in max_examples seconds seed; do
    [[ ${!n} =~ ^[0-9]+$ && ${!n} -gt 0 ]] || die "$n must be a positive whole number, got '${!n}'"
done
command -v python3 >/dev/null || die "python3 not found: install Python 3.9 or later with venv (Debian/Ubuntu: apt-get install python3-venv)"
command -v timeout >/dev/null || die "timeout (coreutils) not found"
require_psql
need_pg_cluster

target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$repo/$target
(cd "$repo" && cargo build --release -q -p event_consumer) || die "cannot build the consumer (cargo build --release -p event_consumer)"
consumer_bin=$target/release/event_consumer

# --- schemathesis, pinned, in a venv of its own ------------------------------------------------
venv=$repo/target/conformance-venv
st=$venv/bin/schemathesis
installed=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)
if [[ $installed != "$schemathesis_version" ]]; then
    say "installing schemathesis $schemathesis_version into $venv"
    [[ -x $venv/bin/python ]] || python3 -m venv "$venv" ||
        die "python3 -m venv $venv failed (Debian/Ubuntu: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "schemathesis==$schemathesis_version" ||
        die "pip could not install schemathesis==$schemathesis_version into $venv"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/conformance.XXXXXX")
# As root, PostgreSQL runs as `postgres`, which must be able to enter the directory.
chmod 755 "$work"
consumer_pids=() schemathesis_pid=
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    local status=$? pid
    trap '' INT TERM
    set +e
    for pid in $schemathesis_pid "${consumer_pids[@]}"; do
        alive "$pid" && kill -TERM "$pid" 2>/dev/null
    done
    for pid in $schemathesis_pid "${consumer_pids[@]}"; do
        for _ in {1..150}; do alive "$pid" || break; sleep 0.1; done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null
    done
    pg_cluster stop --dir "$work/pg" --mode immediate >/dev/null 2>&1
    # A failure keeps what explains it; an interrupted run leaves nothing behind.
    if { ((status != 0)) && [[ -z $interrupted ]]; } || [[ ${CONFORMANCE_KEEP:-} == 1 ]]; then
        say "work directory kept: $work (open.log, token.log, schemathesis-*.log, report-*/)"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
interrupted=
trap 'interrupted=1; exit 130' INT TERM

# --- PostgreSQL and the schema -------------------------------------------------------------------
start_cluster "$work/pg"
# From the work directory, so a developer's .env is not read; the environment wins anyway.
(cd "$work" && DB_HOST=127.0.0.1 DB_PORT=$cluster_port DB_USER=postgres DB_PASSWORD='' DB_NAME=events \
    "$repo/db_init_script.sh") || die "db_init_script.sh could not apply schema.sql"
sql() { PGCONNECT_TIMEOUT=3 psql -X -qAt -h 127.0.0.1 -p "$cluster_port" -U postgres -d events "$@"; }

# --- the consumers: one open, one with consumer.auth_token -------------------------------------
token=conformance-$RANDOM$RANDOM
# Starts a consumer NAME with the defaults on a free port, plus the config lines in $2; sets port.
start_consumer() {
    local name=$1 extra=${2:-} deadline pid
    port=$(pg_cluster free-port 1) || die "found no free port for the consumer"
    cat >"$work/$name.yaml" <<EOF
database:
  host: 127.0.0.1
  port: $cluster_port
  user: postgres
  password: ""
  dbname: events
consumer:
  host: 127.0.0.1
  port: $port
$extra
EOF
    (cd "$work" && LOG_LEVEL=info exec "$consumer_bin" --config "$work/$name.yaml" >"$work/$name.log" 2>&1) &
    pid=$!
    consumer_pids+=("$pid")
    deadline=$((SECONDS + 20))
    until [[ $(http_status 127.0.0.1 "$port" /readyz) == 200 ]]; do
        alive "$pid" || die "the consumer $name exited at start: $(tail -n 1 "$work/$name.log")"
        ((SECONDS < deadline)) || die "the consumer $name did not answer /readyz 200 within 20 s (see $work/$name.log)"
        sleep 0.1
    done
}

# --- schemathesis --------------------------------------------------------------------------------
# NDJSON has no built-in serializer: its schema is the batch array, sent one item per line. A
# value that is not an array (a negative case) has no NDJSON form; it goes as indented JSON,
# which is not NDJSON either, so it stays a request to refuse.
cat >"$work/hooks.py" <<'HOOKS'
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, list):
        return "".join(json.dumps(item) + "\n" for item in value).encode()
    return json.dumps(value, indent=1).encode()
HOOKS
# The statuses that reject invalid data: the documented contract (docs/http-api.md) answers a batch over maxItems
# (consumer.max_batch_events) with 413, which schemathesis does not expect by default.
cat >"$work/schemathesis.toml" <<'TOML'
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "413", "415", "422"]
TOML
version=$("$st" --version | awk '{ print $NF }')

# Runs schemathesis NAME with the document SCHEMA against the consumer on $port (further
# arguments go to `st run`), in the background so a signal reaches the trap at once; its reports
# go to report-NAME.
run_schemathesis() {
    local name=$1 schema=$2 rc=0
    shift 2
    say "schemathesis $version, $name: http://127.0.0.1:$port, --max-examples $max_examples, seed $seed, at most ${seconds}s"
    (cd "$work" && SCHEMATHESIS_HOOKS=$work/hooks.py exec timeout --foreground --kill-after=10 "$seconds" \
        "$st" --no-color --config-file "$work/schemathesis.toml" run "$schema" \
        --url "http://127.0.0.1:$port" --checks all --phases examples,coverage,fuzzing,stateful \
        --max-examples "$max_examples" --seed "$seed" --workers 1 --generation-database none \
        --output-sanitize false --report har,ndjson --report-dir "$work/report-$name" "$@") \
        >"$work/schemathesis-$name.log" 2>&1 &
    schemathesis_pid=$!
    wait "$schemathesis_pid" || rc=$?
    schemathesis_pid=
    cat "$work/schemathesis-$name.log"
    ((rc != 124)) || die "schemathesis ($name) did not finish within ${seconds}s"
    ((rc == 0)) || die "schemathesis ($name) reported failures (exit status $rc; reports in $work/report-$name)"
}

start_consumer open
open_port=$port
run_schemathesis open "$repo/openapi.yaml"
# With consumer.auth_token set, the bearer token is no longer optional: the document for this
# consumer keeps only the bearerAuth alternative of each operation's security. Every request
# carries the token, and the ignored_auth check sends each POST without it and with a wrong one,
# which must get 401 with WWW-Authenticate.
"$venv/bin/python" - "$repo/openapi.yaml" "$work/openapi-token.json" <<'PY' || die "cannot derive the document for a consumer with a token"
import json, sys

import yaml

document = yaml.safe_load(open(sys.argv[1]))
for path in document["paths"].values():
    for operation in path.values():
        if "security" in operation:
            operation["security"] = [alternative for alternative in operation["security"] if alternative]
json.dump(document, open(sys.argv[2], "w"))
PY
start_consumer token "  auth_token: \"$token\""
token_port=$port
run_schemathesis token "$work/openapi-token.json" -H "Authorization: Bearer $token"

# --- the table against the answers ---------------------------------------------------------------
# Test cases and failed checks from the event streams; created events from the recorded answers
# (every request of a run is in its HAR file, the checks' own requests too, and a 201 or a
# "created" result is sent only after its commit); the consumers' own count from /metrics.
read -r cases failures created stored < <("$venv/bin/python" - "$work" "$open_port" "$token_port" <<'PY'
import json, pathlib, sys, urllib.parse, urllib.request

work = pathlib.Path(sys.argv[1])
cases = failures = created = stored = 0
for path in work.glob("report-*/ndjson-*.ndjson"):
    for line in path.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if finished is not None:
            # A skipped scenario (no examples in the schema) records neither.
            cases += len(finished["recorder"].get("cases", {}))
            for checks in finished["recorder"].get("checks", {}).values():
                failures += sum(1 for check in checks if check["status"] == "failure")
for path in work.glob("report-*/har-*.json"):
    for entry in json.loads(path.read_text())["log"]["entries"]:
        route = urllib.parse.urlsplit(entry["request"]["url"]).path
        if entry["request"]["method"] != "POST" or entry["response"]["status"] != 201:
            continue
        if route == "/event":
            created += 1
        elif route == "/events":
            results = json.loads(entry["response"]["content"]["text"])["results"]
            created += sum(1 for result in results if result["status"] == "created")
for port in sys.argv[2:]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as answer:
        for line in answer.read().decode().splitlines():
            name, _, value = line.partition(" ")
            if name == "event_consumer_events_stored_total":
                stored += int(value)
print(cases, failures, created, stored)
PY
) || die "cannot read the schemathesis reports in $work or the consumers' /metrics"
rows=$(sql -c 'SELECT count(*) FROM events') || die "cannot count the rows of events"

echo "schemathesis: $version"
echo "test cases:   $cases"
echo "failures:     $failures"
echo "rows:         $rows"
echo "created:      $created (acknowledged as created; the consumers counted $stored stored)"
((failures == 0)) || die "schemathesis recorded $failures failed checks"
((cases > 0)) || die "schemathesis ran no test case"
((rows == created)) || die "the table holds $rows rows but $created events were acknowledged as created"
((stored == created)) || die "the consumers counted $stored stored events, $created were acknowledged as created"
say "the consumer conforms to openapi.yaml; every event acknowledged as created is in the table"
