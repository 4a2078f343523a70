#!/usr/bin/env bash
# Benchmarks (not tests): throughput of the server-side functions as ratios
# against md5sum, cp and DataJoint Python on the same file (bench/bench.py,
# argument: MiB, default 512), then chunked transfers through SQL against a
# single statement and DataJoint (bench/chunked.py: CHUNKED_MIB, default
# 1024, in CHUNKED_RUNS runs, default 3). Each starts its own servers.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh --python
cargo build --release --locked
.venv/bin/python bench/bench.py "${1:-512}"
.venv/bin/python bench/chunked.py "${CHUNKED_MIB:-1024}" "${CHUNKED_RUNS:-3}"
