#!/usr/bin/env bash
# `make dist`: static binaries of both services for small VMs and embedded boxes.
#
# Builds event_consumer and event_propagator with the size-tuned `dist` profile (release + LTO,
# one codegen unit, stripped, opt-level z; on x86_64 relocations packed as RELR, see
# .cargo/config.toml) for each target, fully static against musl, copies
# them to dist/<target>/ and prints their sizes; a binary over 3 MB (3,000,000 bytes) fails the
# run. Each binary is then run with --version: natively, or under qemu-user when it is installed
# (Debian: apt-get install qemu-user), else that check is skipped and said so.
#
# Targets: DIST_TARGETS (space-separated), default x86_64 and aarch64 musl. A default target whose
# toolchain is missing here (its Rust standard library cannot be added, or no C compiler for it)
# is skipped with a line saying what to install and how to build it (exit 0 when the others
# built); a target named in DIST_TARGETS must build, else the run exits 1. A build that starts
# and fails, or a binary over the budget, always fails the run. aarch64 is linked with
# rust-lld (shipped with rustup's toolchain). ring (rustls's crypto) compiles a little C and
# assembly with the target's C compiler (c_compiler_for below): the native gcc for the build
# machine's architecture, aarch64-linux-gnu-gcc (Debian: apt-get install gcc-aarch64-linux-gnu)
# or clang for aarch64. ring's C needs no libc headers, so a glibc cross compiler does.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

readonly default_targets="x86_64-unknown-linux-musl aarch64-unknown-linux-musl"
read -r -a targets <<<"${DIST_TARGETS:-$default_targets}"
# Named targets must build; default ones may be skipped for a missing toolchain.
named=${DIST_TARGETS:+1}
readonly max_bytes=3000000
readonly bins=(event_consumer event_propagator)
target_dir=${CARGO_TARGET_DIR:-target}
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-rust-lld}

# Returns 1, the reason in `why`, when the standard library of target $1 is missing and cannot be
# added.
add_target() {
    local t=$1
    if command -v rustup >/dev/null; then
        rustup target list --installed 2>/dev/null | grep -qx "$t" && return 0
        say "adding the Rust standard library for $t (rustup target add $t)"
        rustup target add "$t" >&2 && return 0
        why="'rustup target add $t' failed (it downloads the target's standard library; offline or behind a proxy it cannot)"
        return 1
    fi
    why="rustup not found: install the standard library for $t with your toolchain's own means (or use rustup: https://rustup.rs)"
    return 1
}

# Sets CC_<target> for ring's C and assembly when it is not set: a musl cross gcc if there is one,
# else the native compiler (same architecture) or a glibc cross gcc or clang. Returns 1, the
# reason in `why`, when there is none.
c_compiler_for() {
    local t=$1 arch=${1%%-*}
    local var="CC_${t//-/_}"
    [[ -n ${!var:-} ]] && return 0
    local candidates=("$arch-linux-musl-gcc")
    if [[ $arch == "$(uname -m)" ]]; then
        candidates+=(cc gcc clang)
    else
        candidates+=("$arch-linux-gnu-gcc")
    fi
    local c
    for c in "${candidates[@]}"; do
        if command -v "$c" >/dev/null; then
            export "$var=$c"
            return 0
        fi
    done
    if command -v clang >/dev/null; then
        export "$var=clang" "CFLAGS_${t//-/_}=--target=$arch-linux-musl"
        return 0
    fi
    why="no C compiler for $t (ring, the TLS crypto, compiles C and assembly): install"
    why+=" gcc-$arch-linux-gnu or clang (Debian: apt-get install gcc-$arch-linux-gnu), or set $var"
    return 1
}

# How to run a binary of target $1 here: nothing (natively), a qemu-user binary, or no way.
runner_for() {
    local arch=${1%%-*}
    if [[ $arch == "$(uname -m)" ]]; then
        echo native
    elif command -v "qemu-$arch-static" >/dev/null; then
        echo "qemu-$arch-static"
    elif command -v "qemu-$arch" >/dev/null; then
        echo "qemu-$arch"
    else
        echo none
    fi
}

too_big=()
report=()
built=()
skipped=()
failed=()
for t in "${targets[@]}"; do
    why=
    if ! c_compiler_for "$t" || ! add_target "$t"; then
        if [[ -n $named ]]; then
            say "cannot build $t: $why"
            failed+=("$t")
        else
            say "skipping $t: $why"
            skipped+=("$t")
        fi
        continue
    fi
    say "building for $t (profile dist)"
    if ! cargo build --profile dist --target "$t" -p event_consumer -p event_propagator; then
        say "the build for $t failed (output above)"
        failed+=("$t")
        continue
    fi
    mkdir -p "dist/$t"
    runner=$(runner_for "$t")
    for b in "${bins[@]}"; do
        cp "$target_dir/$t/dist/$b" "dist/$t/$b"
        size=$(wc -c <"dist/$t/$b")
        ((size <= max_bytes)) || too_big+=("dist/$t/$b ($size bytes)")
        case $runner in
        none) version="(not run: no qemu-${t%%-*} here; apt-get install qemu-user)" ;;
        native) version=$("dist/$t/$b" --version 2>&1) || die "dist/$t/$b --version failed: $version" ;;
        *) version=$("$runner" "dist/$t/$b" --version 2>&1) || die "$runner dist/$t/$b --version failed: $version"
            version="$version (under $runner)" ;;
        esac
        report+=("$(printf '%-48s %9s bytes (%4s KiB)  %s' "dist/$t/$b" "$size" $(((size + 1023) / 1024)) "$version")")
    done
    built+=("$t")
done

((${#report[@]} == 0)) || printf '%s\n' "${report[@]}"
if command -v file >/dev/null; then
    for t in "${built[@]}"; do file "dist/$t/"*; done | sed 's/, BuildID[^,]*//'
fi
((${#too_big[@]} == 0)) || die "over the 3 MB budget: ${too_big[*]}"
((${#built[@]} == 0)) || say "built ${built[*]}: all binaries static and within 3 MB"
((${#skipped[@]} == 0)) || say "skipped ${skipped[*]} (no toolchain for it here, see above):" \
    "DIST_TARGETS='${skipped[*]}' make dist builds it once that is installed"
((${#failed[@]} == 0)) || die "not built: ${failed[*]}"
((${#built[@]} > 0)) || die "no target could be built here (see above)"
