#!/usr/bin/env bash
# The game-launch benchmark (BENCHMARKS.md): the manifests/game-launch stack
# on a real containerd node, a 50x spike through the game-api Service, run
# twice in one go on the same machine:
#   1. skiff's settings: HPA sync every 1 s, the manifest's behavior
#      (scale-up up to 10x per step, scale-down after 30 s);
#   2. the stock Kubernetes policy: sync every 15 s and the default behavior
#      (scale-up by max(100%, 4 pods) per 15 s, scale-down window 300 s).
# Writes target/game-launch/{skiff,stock}/{timeline.csv,summary.txt,plot.svg}
# and a side-by-side plot.svg. Needs root, containerd, runc, CNI plugins,
# busybox-static, and release builds:
#   cargo build --release -p skiff -p e2e --bins && scripts/game-launch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SKIFF_BIN:-target/release/skiff}
LOADGEN=${LOADGEN:-target/release/loadgen}
OUT=${OUT:-target/game-launch}
BASE=${BASE:-4}      # requests/s before and after the spike
PEAK=${PEAK:-200}    # 50x
PLATEAU=${PLATEAU:-60s}
COOLDOWN=${COOLDOWN:-90s}
mkdir -p "$OUT"

run() { # name sync-period patch-behavior
  local name=$1 sync=$2 stock=$3
  local dir
  dir=$(mktemp -d /tmp/skiff-game-XXXX)
  local port=$((20000 + RANDOM % 20000))
  "$BIN" up --runtime containerd --data-dir "$dir" --port "$port" \
    --horizontal-pod-autoscaler-sync-period "$sync" >"$dir/skiff.log" 2>&1 &
  local pid=$!
  trap '"$BIN" down --data-dir "'"$dir"'" >/dev/null 2>&1 || true; kill '"$pid"' 2>/dev/null || true' RETURN
  for _ in $(seq 100); do [ -f "$dir/kubeconfig.yaml" ] && break; sleep 0.1; done
  export KUBECONFIG=$dir/kubeconfig.yaml
  "$BIN" image build --binary /bin/busybox --name skiff.local/game:1 \
    --link sh --link httpd --data-dir "$dir" >/dev/null
  kubectl wait --for=condition=Ready node --all --timeout=60s >/dev/null
  kubectl apply -f manifests/game-launch/ >/dev/null
  if [ "$stock" = yes ]; then
    kubectl -n game patch hpa game-api --type=json \
      -p '[{"op":"remove","path":"/spec/behavior"}]' >/dev/null
  fi
  kubectl -n game wait --for=condition=Available deployment --all --timeout=120s >/dev/null
  local ip
  ip=$(kubectl -n game get svc game-api -o jsonpath='{.spec.clusterIP}')
  # Let the metrics pipeline see the baseline before the spike.
  sleep 5
  "$LOADGEN" --url "http://$ip/cgi-bin/play" --kubeconfig "$KUBECONFIG" \
    --namespace game --deployment game-api \
    --phase "20s@$BASE" --phase "5s@$BASE..$PEAK" --phase "$PLATEAU@$PEAK" \
    --phase "2s@$PEAK..$BASE" --phase "$COOLDOWN@$BASE" \
    --capacity-replicas 8 --min-replicas 1 --title "$name" --out "$OUT/$name" "${@:4}"
  kubectl -n game describe hpa game-api > "$OUT/$name/hpa.txt" || true
}

echo "== skiff policy (1 s sync, 10x scale-up steps)"
run skiff 1s no
echo "== stock policy (15 s sync, default behavior)"
run stock 15s yes --beside "skiff=$OUT/skiff/timeline.csv"
cp "$OUT/stock/plot.svg" "$OUT/plot.svg"
echo "plot: $OUT/plot.svg"
