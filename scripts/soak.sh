#!/usr/bin/env bash
# The soak binaries (`make soak`): hostile clients by the thousand, wall-clock bounds, pacing
# at 1 kHz. Each crate with a tests/soak/main.rs declares it `test = false`, so `make test`
# leaves it out; this runs all of them through scripts/test.sh (same temporary directory,
# same "no PostgreSQL left behind" check). Extra arguments go to the test binaries, e.g.
# `scripts/soak.sh abuse --nocapture`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The hostile-client tests hold about 1,600 sockets in the test process; the consumer's own
# limit comes from this one as well. Raise the soft limit as far as the hard one allows (CI
# runs as root, where it can be raised further); a test that still lacks descriptors says so.
if ! ulimit -n 20000 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)"
fi
echo "soak.sh: ulimit -n $(ulimit -n)"

# The memory targets are measured on the binary that ships (tests/soak/slow_uploaders.rs).
cargo build --release -p event_consumer
export EVENTS_RELEASE_CONSUMER=$PWD/target/release/event_consumer

packages=()
for main in */tests/soak/main.rs; do
    if [[ -f $main ]]; then
        packages+=(-p "${main%%/*}")
    fi
done
if [[ ${#packages[@]} -eq 0 ]]; then
    echo "soak.sh: no crate has tests/soak/main.rs" >&2
    exit 1
fi
extra=()
if [[ $# -gt 0 ]]; then
    extra=(-- "$@")
fi
exec scripts/test.sh "${packages[@]}" --test soak "${extra[@]}"
