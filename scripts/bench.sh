#!/usr/bin/env bash
# Benchmarks (not tests): throughput of the server-side functions as ratios
# against md5sum, cp + sync and DataJoint Python doing the same job on the
# same data, with one connection and with four at once, and the server's
# peak memory. Arguments: file size in MiB (512), small objects (2000).
# Sets up what it needs, builds, starts its own server; numbers taken while
# other work runs on the machine are disturbed: compare ratios, not rates.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh --python
cargo build --release --locked
.venv/bin/python bench/bench.py "${1:-512}" "${2:-2000}"
