#!/usr/bin/env bash
# corelane-kv vs redis-server under redis-benchmark, same run, alternating, 3 rounds.
# Usage: [KV_ARGS="--shards 1"] [BENCH_ARGS="-r 100000"] bash benches/kv-vs-redis.sh [ROUNDS]
#   (needs redis-server and redis-benchmark). BENCH_ARGS go to the throughput runs: by default
#   redis-benchmark uses one key per test (key:__rand_int__); "-r N" spreads them over N keys.
# Prints a markdown table of requests/s and p50 latency per test, median over the rounds,
# and the RSS of each server after 1M SETs of 16-byte keys and values.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
KV_PORT=6390; REDIS_PORT=6391
cargo build --release -q -p corelane-kv
OUT=$(mktemp -d)
start_kv()    { target/release/kv-server --addr 127.0.0.1:$KV_PORT ${KV_ARGS:-} >"$OUT/kv.log" 2>&1 & echo $! > "$OUT/kv.pid"; }
start_redis() { redis-server --bind 127.0.0.1 --port $REDIS_PORT --save '' --appendonly no --daemonize no >"$OUT/redis.log" 2>&1 & echo $! > "$OUT/redis.pid"; }
stop_all()    { kill "$(cat "$OUT/kv.pid")" "$(cat "$OUT/redis.pid")" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop_all EXIT
wait_port()   { for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.05; done; echo "port $1 did not answer" >&2; exit 1; }
start_kv; start_redis; wait_port $KV_PORT; wait_port $REDIS_PORT
for round in $(seq "$ROUNDS"); do
  for target in kv redis; do
    port=$([ $target = kv ] && echo $KV_PORT || echo $REDIS_PORT)
    redis-cli -p $port flushall >/dev/null
    redis-benchmark -p $port -t set,get,incr,mset -n 500000 -c 50 -P 16 ${BENCH_ARGS:-} --csv 2>/dev/null \
      | sed 's/"//g' | awk -F, -v t=$target -v r=$round 'NR>1 {gsub(/ /, "_", $1); print t, r, $1, $2, $5}' >> "$OUT/results"
  done
done
# RSS after 1M SETs of 16-byte keys and values (redis-benchmark -r makes keys key:000000xxxxxx).
for target in kv redis; do
  port=$([ $target = kv ] && echo $KV_PORT || echo $REDIS_PORT)
  redis-cli -p $port flushall >/dev/null
  redis-benchmark -p $port -t set -n 1000000 -r 1000000000 -d 16 -c 50 -P 16 -q >/dev/null 2>&1
  keys=$(redis-cli -p $port dbsize)
  pid=$(cat "$OUT/$target.pid")
  echo "rss $target $(awk '/VmRSS/ {print $2}' /proc/$pid/status) $keys" >> "$OUT/results"
done
python3 - "$OUT/results" <<'PY'
import sys, statistics, collections
rps = collections.defaultdict(list); p50 = collections.defaultdict(list); rss = {}
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] == 'rss':
        rss[f[1]] = (int(f[2]), int(f[3])); continue
    target, _, test, r, lat = f[0], f[1], f[2], float(f[3]), float(f[4])
    rps[(target, test)].append(r); p50[(target, test)].append(lat)
order = ['SET', 'GET', 'INCR', 'MSET_(10_keys)']
tests = sorted({t for _, t in rps}, key=lambda t: order.index(t) if t in order else len(order))
print("| test | corelane-kv req/s | redis-server req/s | ratio | corelane-kv p50 ms | redis p50 ms |")
print("|---|---|---|---|---|---|")
for t in tests:
    k, r = statistics.median(rps[('kv', t)]), statistics.median(rps[('redis', t)])
    print(f"| {t.replace('_', ' ')} | {k:,.0f} | {r:,.0f} | {k/r:.2f}x | {statistics.median(p50[('kv', t)]):.3f} | {statistics.median(p50[('redis', t)]):.3f} |")
if rss:
    (kr, kk), (rr, rk) = rss['kv'], rss['redis']
    print(f"\nRSS after 1M random SETs (16-byte values): corelane-kv {kr/1024:.0f} MiB ({kk} keys), redis-server {rr/1024:.0f} MiB ({rk} keys): {kr/rr:.2f}x")
PY
