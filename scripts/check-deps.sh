#!/usr/bin/env bash
# Fails when the scheduler, kubelet, controllers or proxy crate depends on the
# apiserver crate, directly or indirectly: components use the API only
# through kube-rs.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for crate in scheduler kubelet controllers proxy; do
  if cargo tree -p "$crate" -e normal,build --prefix none 2>/dev/null | grep -qE '^apiserver v'; then
    echo "architecture rule broken: $crate depends on the apiserver crate" >&2
    status=1
  fi
done
# The service proxy is adapted to the node agent by the binary, never linked to it.
if cargo tree -p proxy -e normal,build --prefix none 2>/dev/null | grep -qE '^kubelet v'; then
  echo "architecture rule broken: proxy depends on the kubelet crate" >&2
  status=1
fi
exit $status
