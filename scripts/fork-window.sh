#!/usr/bin/env bash
# How often a SIGINT to the process group kills a background child before it ignores the signal:
# the plain `( trap '' INT TERM HUP; exec CMD ) &` of bash against lib.sh's deaf_start, which
# run-suite.sh uses to start the database script and the services.
#
#   scripts/fork-window.sh [CHILDREN [GAP_SECONDS [ROUNDS]]]     (default 400 0.01 3)
#
# Each round, a parent that traps INT (as run-suite.sh does) starts CHILDREN children one after
# the other, each appending a line to a file, while SIGINT reaches its process group every
# GAP_SECONDS; the rounds alternate plain, deaf_start, deaf_start, plain... A measurement, not a
# test: under a signal every few milliseconds bash itself sometimes stops making progress
# (reported as "stalled"), with or without deaf_start.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

children=${1:-400} gap=${2:-0.01} rounds=${3:-3}
[[ $children =~ ^[0-9]+$ && $rounds =~ ^[0-9]+$ ]] || die "usage: $me [CHILDREN [GAP_SECONDS [ROUNDS]]]"
work=$(mktemp -d "${TMPDIR:-/tmp}/fork-window.XXXXXX")
trap 'rm -rf "$work"' EXIT

# storm MODE DIR: one round; prints how many children ran, or "stalled".
storm() {
    local mode=$1 dir=$2 leader deadline=$((SECONDS + 60))
    mkdir -p "$dir"
    # shellcheck disable=SC2016 # the inner script expands its own variables
    env --default-signal=INT,TERM,HUP setsid bash -c '
        source "$1/scripts/lib.sh"
        run_dir=$2
        trap : INT
        : >"$2/ready"
        for ((i = 0; i < $3; i++)); do
            if [[ $4 == plain ]]; then
                ( trap "" INT TERM HUP; exec sh -c "echo ran >>\"\$0/ran\"" "$2" ) &
                deaf_pid=$!
            else
                deaf_start child "INT TERM HUP" sh -c "echo ran >>\"\$0/ran\"" "$2"
            fi
            while kill -0 "$deaf_pid" 2>/dev/null; do wait "$deaf_pid" || true; done
        done' storm "$repo" "$dir" "$children" "$mode" &
    leader=$!
    while [[ ! -e $dir/ready ]] && alive "$leader"; do sleep 0.01; done
    while alive "$leader"; do
        if ((SECONDS >= deadline)); then
            kill -KILL -- "-$leader" 2>/dev/null || true
            wait "$leader" 2>/dev/null || true
            echo stalled
            return
        fi
        kill -INT -- "-$leader" 2>/dev/null || true
        sleep "$gap"
    done
    wait "$leader" 2>/dev/null || true
    wc -l 2>/dev/null <"$dir/ran" || echo 0
}

order=(plain deaf_start deaf_start plain)
echo "$me: $children children a round, a SIGINT to their process group every $gap s"
for ((r = 0; r < rounds * 2; r++)); do
    mode=${order[r % 4]}
    echo "$mode: $(storm "$mode" "$work/$r") of $children ran"
done
