#!/usr/bin/env bash
# Whole-circuit benchmark: 3-hop circuit build time and download throughput of our OP through
# three of our ORs and through three C tor relays, next to C tor's own client through the same
# relays, all measured in this run on 127.0.0.1 (a private C tor network from
# tests/tornet/tornet.py). Prints a table with ratios vs the C tor client.
# Arguments go to the binary: --reps N (5), --mb N (20, the size of each download).
set -euo pipefail
cd "$(dirname "$0")/.."
for c in tor tor-gencert curl python3; do
  command -v "$c" >/dev/null || { echo "bench-circuits.sh needs $c (scripts/setup.sh)" >&2; exit 1; }
done
cargo build --release -p onion-tests --bin bench_circuits
exec target/release/bench_circuits "$@"
