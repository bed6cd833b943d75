#!/usr/bin/env bash
# The project's test command (README names it; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
