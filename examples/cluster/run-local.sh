#!/usr/bin/env bash
# Runs the keyed counter on one machine: a 3-server NATS JetStream cluster on loopback, three
# nodes (printing the partitions each owns as they change), and a sender. Ctrl-C stops all.
# Needs nats-server (apt-get install nats-server).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release -p corelane-cluster
dir=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
routes="nats-route://127.0.0.1:16201,nats-route://127.0.0.1:16202,nats-route://127.0.0.1:16203"
for i in 1 2 3; do
  cat > "$dir/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:1610$i
jetstream { store_dir: "$dir/n$i" }
cluster { name: local, listen: 127.0.0.1:1620$i, routes: [$routes] }
CONF
  nats-server -c "$dir/n$i.conf" >"$dir/n$i.log" 2>&1 &
  pids+=($!)
done
servers="nats://127.0.0.1:16101,nats://127.0.0.1:16102,nats://127.0.0.1:16103"
# Each node lists every server (tried in order), its own first: the nodes spread over the
# servers and each can reach the others when its own dies.
order=("$servers"
  "nats://127.0.0.1:16102,nats://127.0.0.1:16103,nats://127.0.0.1:16101"
  "nats://127.0.0.1:16103,nats://127.0.0.1:16101,nats://127.0.0.1:16102")
sleep 3 # JetStream elects its meta leader
n=0
for id in a b c; do
  target/release/cluster-node --id "$id" --servers "${order[$n]}" --replicas 3 &
  n=$((n + 1))
  pids+=($!)
  sleep 1
done
target/release/cluster-send --servers "$servers" --replicas 3 --rounds 200
echo "running; Ctrl-C to stop (try: kill -9 one cluster-node and watch its partitions move)"
wait
