#!/usr/bin/env bash
# The project's test command (see README): build the binary the end-to-end
# tests drive, then run every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo test --workspace -- --test-threads 2
