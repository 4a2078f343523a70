#!/usr/bin/env bash
# Benchmarks (not tests), each against a reference run in the same script on
# the same data: the server-side functions against md5sum, cp and DataJoint
# Python on one file (argument: MiB), then S3 at a 20 ms round trip and
# without delay against DataJoint 0.14.9 (bench/s3.py; more arguments, such
# as --objects 500 --big-mib 1024 --repeat 3, go to it).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh --python
cargo build --release --locked
.venv/bin/python bench/bench.py "${1:-512}"
.venv/bin/python bench/s3.py "${@:2}"
