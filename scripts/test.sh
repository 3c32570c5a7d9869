#!/usr/bin/env bash
# Runs `cargo test` against real PostgreSQL, then checks that nothing is left behind.
#
#   scripts/test.sh                 the whole test suite (`make test`: cargo test --workspace)
#   scripts/test.sh ARGS...         `cargo test ARGS...` instead, e.g. the soak binaries
#                                   (scripts/soak.sh) or `-p event_consumer --test api`
#
# Without DATABASE_URL each test process starts its own throwaway cluster (test_support) under
# a temporary directory made here; its guardian stops the cluster and deletes it when the
# process exits. After the run this script waits for that and fails if a postgres process or
# a data directory of the run is still there, or a packet filter rule of a partition test.
#
# Tests that need root (a partition by iptables, a full tmpfs, port 53, a mount namespace) say
# SKIPPED where they cannot run; EVENTS_TEST_PRIVILEGED=require (set by .ci/run) makes that a
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -eq 0 ]]; then
    set -- --workspace
fi

EVENTS_TEST_TMPDIR=$(mktemp -d "${TMPDIR:-/tmp}/events-test.XXXXXX")
export EVENTS_TEST_TMPDIR
# The cluster runs as the postgres user when we are root: it must be able to enter this dir.
chmod 755 "$EVENTS_TEST_TMPDIR"

# cargo's output as it comes, and one line with the totals of its `test result:` lines at the end.
started=$SECONDS
totals=$EVENTS_TEST_TMPDIR.totals
set +e
cargo test "$@" | awk -v totals="$totals" '
    { print; fflush() }
    /^test result:/ {
        n = $4 + $6 + $8
        if (n > 0) binaries++
        passed += $4; failed += $6; ignored += $8
    }
    END { printf "%d %d %d %d\n", passed, failed, ignored, binaries > totals }'
status=${PIPESTATUS[0]}
set -e
read -r passed failed ignored binaries <"$totals" || true
rm -f "$totals"
summary="test.sh: ${passed:-0} passed, ${failed:-0} failed, ${ignored:-0} ignored, in ${binaries:-0} test binaries, $((SECONDS - started)) s"
if ((status != 0)); then
    summary+=" (cargo test exited $status; it stops at the first test binary that fails)"
fi
echo "$summary"

# Guardians clean up asynchronously once their test process has exited.
leftover() {
    pgrep -f -- "$EVENTS_TEST_TMPDIR" >/dev/null 2>&1 && return 0
    [[ -n $(ls -A "$EVENTS_TEST_TMPDIR" 2>/dev/null) ]]
}
for _ in $(seq 1 100); do
    leftover || break
    sleep 0.2
done
if leftover; then
    echo "test.sh: the test run left PostgreSQL behind under $EVENTS_TEST_TMPDIR:" >&2
    pgrep -af -- "$EVENTS_TEST_TMPDIR" >&2 || true
    ls -la "$EVENTS_TEST_TMPDIR" >&2 || true
    status=1
else
    echo "test.sh: no PostgreSQL process or data directory left behind"
fi
rmdir "$EVENTS_TEST_TMPDIR" 2>/dev/null || true

# Packet filter rules of a partition test (test_support::Blackhole) that a killed test left:
# removed, and the run fails, as for a server left behind.
if command -v iptables >/dev/null && rules=$(iptables -w -S INPUT 2>/dev/null | grep -- '--comment events-test-blackhole'); then
    echo "test.sh: removing packet filter rules a partition test left behind:" >&2
    while read -r rule; do
        echo "  $rule" >&2
        read -r -a words <<<"${rule/#-A /}"
        iptables -w -D "${words[@]}" || true
    done <<<"$rules"
    status=1
fi
exit "$status"
