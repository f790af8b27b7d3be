#!/usr/bin/env bash
# API-server/store benchmark (see BENCHMARKS.md): builds the release skiff and
# bench_api, then runs it against a fresh etcd and two `skiff up --nodes 0`
# clusters (embedded store and --store etcd). Extra arguments go to bench_api,
# e.g. `scripts/bench-api.sh --reps 5 --concurrency 16`.
# Needs Debian's etcd-server (`etcd` on PATH) and kubectl. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins -p skiff -p e2e
target_dir="${CARGO_TARGET_DIR:-target}"
export SKIFF_BIN="${SKIFF_BIN:-$target_dir/release/skiff}"
exec "$target_dir/release/bench_api" "$@"
