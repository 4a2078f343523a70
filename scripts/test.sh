#!/usr/bin/env bash
# The whole test suite: sets up what it needs, checks formatting and lints
# (rustfmt, clippy), builds the library, runs the unit tests, then the
# integration, fuzz and DataJoint interoperability tests against a MariaDB
# server that the harness starts on 127.0.0.1, in random order (the seed is
# printed; pass -p no:randomly for file order), including the container image
# (podman) and three-node Galera cluster tests. Every test component must be
# there: a missing one fails the run instead of skipping. On a machine that
# cannot run containers, DJ_UDF_REQUIRE_ALL=0 scripts/test.sh skips what it
# cannot run and prints why (except under CI, which requires everything).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export DJ_UDF_REQUIRE_ALL=${DJ_UDF_REQUIRE_ALL:-1}
# tests/test_chunked.py's acceptance run moves this many bytes in and out (3 GiB).
export DJ_UDF_CHUNKED_BYTES=${DJ_UDF_CHUNKED_BYTES:-$((3 << 30))}

scripts/setup.sh --python
cargo fmt --check
cargo clippy --release --locked --all-targets -- -D warnings
cargo build --release --locked
cargo test --release --locked
.venv/bin/pytest -q -rs -p no:cacheprovider tests "$@"
