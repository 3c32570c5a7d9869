#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for SECONDS (default 60, or FUZZ_SECONDS) and reports its
# execution count. Exit status 1 when a target crashes, or when the toolchain is missing.
# A crash input is kept in fuzz/artifacts/<target>/ (not committed). Once it is fixed, keep it
# twice: as a unit test beside the code it crashed (the framing or event parsing tests), and
# copied into fuzz/seeds/<target>/, which is committed and seeds every run, so the fuzzer
# starts from every input that ever broke it.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     targets: http_framer parse_event parse_event_list
#
# Needs the nightly toolchain (libFuzzer's sanitizer flags) and cargo-fuzz, which is installed
# from crates.io when missing. The corpus grows in fuzz/corpus/<target>/ (not committed); it is
# seeded from fuzz/seeds/<target>/ on every run.
set -euo pipefail
me=fuzz.sh
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo/fuzz"

say() { printf '%s: %s\n' "$me" "$*" >&2; }
die() { say "$*"; exit 1; }

seconds=${1:-${FUZZ_SECONDS:-60}}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a positive whole number, got \`$seconds\`"
shift $(( $# > 0 ? 1 : 0 ))
all_targets=(http_framer parse_event parse_event_list)
targets=("$@")
(( ${#targets[@]} > 0 )) || targets=("${all_targets[@]}")

if ! cargo +nightly --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || die "the nightly toolchain is missing and rustup is not installed: install rustup, then \`rustup toolchain install nightly\`"
    say "installing the nightly toolchain (rustup toolchain install nightly --profile minimal)"
    rustup toolchain install nightly --profile minimal || die "cannot install the nightly toolchain; cargo fuzz needs it"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz from crates.io (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked || die "cannot install cargo-fuzz: \`cargo install cargo-fuzz\` failed"
fi

say "building the fuzz targets (nightly, sanitizer instrumentation)"
# Built before the timed runs, so the time measures fuzzing, not compiling.
for target in "${targets[@]}"; do
    cargo +nightly fuzz build "$target" || die "cannot build fuzz target $target"
done

logs=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-logs.XXXXXX")
trap 'rm -rf "$logs"' EXIT
failed=()
summary=()
for target in "${targets[@]}"; do
    corpus=corpus/$target
    mkdir -p "$corpus"
    if [[ -d seeds/$target ]]; then cp -n seeds/"$target"/* "$corpus"/ 2>/dev/null || true; fi
    dict=()
    [[ $target == http_framer ]] && dict=(-dict=http.dict)
    say "$target: fuzzing for ${seconds}s"
    status=0
    cargo +nightly fuzz run "$target" "$corpus" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" \
        >"$logs/$target.log" 2>&1 || status=$?
    runs=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$logs/$target.log" | tail -n 1)
    [[ -n $runs ]] || runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)/\1/p' "$logs/$target.log" | tail -n 1)
    if (( status != 0 )); then
        failed+=("$target")
        summary+=("$target: FAILED after ${runs:-?} executions (exit $status)")
        say "$target failed; the end of its output:"
        tail -n 40 "$logs/$target.log" >&2
        find "artifacts/$target" -type f 2>/dev/null | sed "s|^|$me: crash input: fuzz/|" >&2 || true
        say "after the fix: a unit test of that input beside the code, and a copy in fuzz/seeds/$target/"
    else
        summary+=("$target: ${runs:-?} executions in ${seconds}s, no crash (corpus $(find "$corpus" -type f | wc -l) inputs)")
    fi
done

printf '%s\n' "${summary[@]}"
if (( ${#failed[@]} > 0 )); then
    say "crashed: ${failed[*]}"
    exit 1
fi
