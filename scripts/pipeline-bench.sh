#!/usr/bin/env bash
# The pure pipeline's cost per packet (examples/pipeline_bench.rs): nanoseconds, from a native
# run (median of 7 runs of 100,000 packets; noisy on a shared machine), and instructions, from
# callgrind (which do not move with the machine's load). One line per case:
#
#   case=fast ns_per_packet=113.6 instructions_per_packet=1096.0
#
# Instructions per packet are (I(big) - I(small)) / (big - small) over two callgrind runs of
# the same case with different packet counts, counting only inside the measured loop
# (--toggle-collect on run_batch), so setup, the warm-up's fixed cost and the untimed reset
# between batches of new flows cancel out or are left out.
#
# Usage: scripts/pipeline-bench.sh [--check FILE | --record FILE] [--keep DIR] [CASE...]
#   CASE          copy fast new-flow nat igw drop (default: all)
#   --check FILE  fail if any case takes more than 5 % more instructions per packet than FILE
#                 records (scripts/pipeline-bench.expected is the committed baseline)
#   --record FILE write this run's instruction counts to FILE (to move the baseline on purpose)
#   --keep DIR    keep the callgrind output files there, for callgrind_annotate
# Environment: PBENCH_SMALL, PBENCH_BIG (packets of the two callgrind runs, default 20000 and
# 120000), PBENCH_TOLERANCE (percent, default 5).
set -euo pipefail
cd "$(dirname "$0")/.."

check="" record="" keep=""
cases=()
while [ $# -gt 0 ]; do
    case "$1" in
        --check) check=$2; shift 2 ;;
        --record) record=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "pipeline-bench: unknown option $1" >&2; exit 2 ;;
        *) cases+=("$1"); shift ;;
    esac
done
[ ${#cases[@]} -gt 0 ] || cases=(copy fast new-flow nat igw nat-in igw-in drop)
small=${PBENCH_SMALL:-20000}
big=${PBENCH_BIG:-120000}
tolerance=${PBENCH_TOLERANCE:-5}

if ! command -v valgrind >/dev/null; then
    echo "pipeline-bench: valgrind is missing: instruction counts need callgrind (apt-get install valgrind)" >&2
    exit 1
fi
if [ -n "$check" ] && [ ! -r "$check" ]; then
    echo "pipeline-bench: cannot read $check" >&2
    exit 1
fi

cargo build --release --locked --example pipeline_bench
bin=target/release/examples/pipeline_bench

if [ -n "$keep" ]; then
    mkdir -p "$keep"
    out=$keep
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi

# Instructions executed inside run_batch for one case and packet count.
instructions() {
    local case=$1 packets=$2 file="$out/callgrind.$1.$2.out"
    valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect='*pipeline_bench::run_batch*' \
        "$bin" --case "$case" --packets "$packets" --runs 1 >/dev/null 2>"$out/valgrind.$case.$packets.log" || {
        cat "$out/valgrind.$case.$packets.log" >&2
        echo "pipeline-bench: callgrind failed on case $case" >&2
        exit 1
    }
    local total
    total=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$file")
    if [ -z "$total" ] || [ "$total" = 0 ]; then
        echo "pipeline-bench: no instructions counted in $file (did run_batch get renamed or inlined?)" >&2
        exit 1
    fi
    echo "$total"
}

results=()
for case in "${cases[@]}"; do
    ns=$("$bin" --case "$case" --packets 100000 --runs 7 | sed -n 's/.*ns_per_packet=//p')
    i_small=$(instructions "$case" "$small")
    i_big=$(instructions "$case" "$big")
    ipp=$(awk -v a="$i_small" -v b="$i_big" -v s="$small" -v g="$big" 'BEGIN { printf "%.1f", (b - a) / (g - s) }')
    line="case=$case ns_per_packet=$ns instructions_per_packet=$ipp"
    echo "$line"
    results+=("$line")
done

if [ -n "$record" ]; then
    {
        echo "# Instructions per packet of examples/pipeline_bench.rs under callgrind, written by"
        echo "# scripts/pipeline-bench.sh --record on $(date +%F) at $(git rev-parse --short HEAD)."
        for line in "${results[@]}"; do
            echo "${line/ ns_per_packet=* / }"
        done
    } >"$record"
    echo "recorded in $record"
fi

if [ -n "$check" ]; then
    failed=0
    for line in "${results[@]}"; do
        case=$(sed 's/^case=\([^ ]*\).*/\1/' <<<"$line")
        now=$(sed 's/.*instructions_per_packet=//' <<<"$line")
        was=$(sed -n "s/^case=$case instructions_per_packet=//p" "$check")
        if [ -z "$was" ]; then
            echo "check: case=$case has no recorded count in $check" >&2
            failed=1
            continue
        fi
        verdict=$(awk -v n="$now" -v w="$was" -v t="$tolerance" \
            'BEGIN { d = (n - w) / w * 100; printf "%+.1f%% %s", d, (d > t ? "REGRESSED" : (d < -t ? "improved (record it)" : "ok")) }')
        echo "check: case=$case instructions_per_packet=$now recorded=$was $verdict"
        case $verdict in *REGRESSED*) failed=1 ;; esac
    done
    if [ "$failed" != 0 ]; then
        echo "pipeline-bench: instructions per packet regressed by more than $tolerance % against $check" >&2
        exit 1
    fi
fi
