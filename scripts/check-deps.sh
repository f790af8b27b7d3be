#!/usr/bin/env bash
# Fails when the scheduler, kubelet or controllers crate depends on the
# apiserver crate, directly or indirectly: components use the API only
# through kube-rs.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for crate in scheduler kubelet controllers; do
  if cargo tree -p "$crate" -e normal,build --prefix none 2>/dev/null | grep -qE '^apiserver v'; then
    echo "architecture rule broken: $crate depends on the apiserver crate" >&2
    status=1
  fi
done
exit $status
