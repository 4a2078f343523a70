#!/usr/bin/env bash
# Benchmarks (not tests), each against a reference run in the same script on
# the same data: the server-side functions against md5sum, cp + sync and
# DataJoint Python, with one connection and with four at once, and the
# server's peak memory (bench/bench.py; arguments: file size in MiB, 512, and
# small objects, 2000); S3 at a 20 ms round trip and without delay against
# DataJoint 0.14.9 (bench/s3.py; further arguments, such as --objects 500
# --big-mib 1024 --repeat 3, go to it); chunked transfers through SQL
# against a single statement and DataJoint (bench/chunked.py: CHUNKED_MIB,
# default 1024, in CHUNKED_RUNS runs, default 3). Numbers taken while other
# work runs on the machine are disturbed: compare ratios, not rates.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/setup.sh --python
cargo build --release --locked
.venv/bin/python bench/bench.py "${1:-512}" "${2:-2000}"
.venv/bin/python bench/s3.py "${@:3}"
.venv/bin/python bench/chunked.py "${CHUNKED_MIB:-1024}" "${CHUNKED_RUNS:-3}"
