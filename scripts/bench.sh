#!/usr/bin/env bash
# Benchmarks (not tests): throughput of the server-side functions as ratios
# against md5sum, cp and DataJoint Python on the same file. Argument: MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh --python
cargo build --release --locked
.venv/bin/python bench/bench.py "${1:-512}"
