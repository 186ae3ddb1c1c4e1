#!/usr/bin/env bash
# Runs every vpclab test: unit tests, then the integration tests that bring up real labs
# (namespaces, TAPs, traffic). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then exec sudo -E "$0" "$@"; fi
scripts/install-deps.sh
cargo build --release --locked --all-targets
cargo test --release --locked -- --test-threads 4 "$@"
