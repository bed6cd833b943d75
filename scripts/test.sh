#!/usr/bin/env bash
# The project's test command (README names it; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
# The simulator is behind a feature: its tests, doc example and runnable example.
cargo test -p corelane-worker --features sim --locked --test sim
cargo test -p corelane-worker --features sim --locked --doc
cargo run -q -p corelane --example sim --features sim --locked >/dev/null
# The optional features: signal shutdown, tracing events, sampled handler latency.
cargo test -p corelane-worker --features signal,tracing,latency --locked \
  --test pool --test surface --test events --test tracing
