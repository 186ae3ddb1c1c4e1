#!/usr/bin/env bash
# Runs every vpclab test: unit tests, then the integration tests that bring up real labs
# (namespaces, TAPs, traffic). Needs root. Ends with one line: "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
scripts/install-deps.sh
cargo build --release --locked --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --locked -- --test-threads 4 "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
