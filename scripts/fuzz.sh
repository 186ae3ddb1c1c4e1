#!/usr/bin/env bash
# Coverage-guided fuzzing of vpclab (cargo-fuzz, libFuzzer): runs every target of fuzz/ for
# SECONDS_PER_TARGET seconds (default 30) from its committed seed corpus, and fails if any target
# crashes (a panic, a failed invariant, a time-out, or more than 2 GB of memory).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]
#
# With TARGETs named, only those run (so that long campaigns can run targets side by side).
#
# The corpus is copied to a temporary directory first, so a run never rewrites fuzz/corpus/; a
# crashing input is kept in fuzz/artifacts/<target>/ (ignored by git) and reproduced with
#   cd fuzz && cargo fuzz run -s none -a <target> artifacts/<target>/<file>
# (RUSTC_BOOTSTRAP=1 in front on a stable toolchain). Targets are built without a sanitizer
# (the fuzzed code is safe Rust) but with debug assertions and overflow checks.
#
# Toolchain: a nightly one if rustup lists it, else the stable one with RUSTC_BOOTSTRAP=1 (what
# cargo-fuzz needs of nightly is only its -Z flags). cargo-fuzz is installed if missing.
set -euo pipefail

secs=${1:-30}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET [TARGET...]]" >&2; exit 2 ;; esac
shift || true
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
    echo "fuzz: toolchain $(rustc +nightly --version)"
else
    export RUSTC_BOOTSTRAP=1
    echo "fuzz: toolchain $(rustc --version) with RUSTC_BOOTSTRAP=1"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Per target: extra libFuzzer options.
targets=(pipeline topology control_request api_request dns_query)
if [ $# -gt 0 ]; then
    for t in "$@"; do
        case " ${targets[*]} " in *" $t "*) ;; *) echo "fuzz: no target '$t' (${targets[*]})" >&2; exit 2 ;; esac
    done
    targets=("$@")
fi
declare -A extra=(
    [pipeline]="-max_len=8192"
    [topology]="-max_len=16384"
    [control_request]="-max_len=8192"
    [api_request]="-max_len=4096"
    [dns_query]="-max_len=1300"
)
build=(-s none -a)

cargo "${toolchain[@]}" fuzz build "${build[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary=()
failed=0
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus"
    cp -r "corpus/$t" "$work/corpus/$t"
    log="$work/$t.log"
    echo "fuzz: $t for ${secs}s ($(ls "corpus/$t" | wc -l) seeds)"
    # shellcheck disable=SC2086 # the extra options are words
    if cargo "${toolchain[@]}" fuzz run "${build[@]}" "$t" "$work/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 ${extra[$t]} \
        >"$log" 2>&1; then
        status=ok
    else
        status=CRASHED
        failed=1
        tail -n 60 "$log"
    fi
    # libFuzzer's last status line: "#N DONE cov: X ft: Y corp: ..." (or the last one before a crash).
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    echo "fuzz: $t: $status: ${last:-no status line}"
    summary+=("$(printf '%-16s %-8s %6ss %12s execs  cov %6s  ft %6s' "$t" "$status" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}")")
    rm -rf "$work/corpus"
done

echo
echo "fuzz summary (target, result, time, executions, coverage):"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "fuzz: a target crashed; its input is in fuzz/artifacts/" >&2
    exit 1
fi
