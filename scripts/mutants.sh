#!/usr/bin/env bash
# Mutation testing, as a habit before a release or after a change to a
# guarantee (not part of scripts/test.sh: it rebuilds once per mutant).
#
#   scripts/mutants.sh unit          # cargo-mutants over the unit-tested core
#   scripts/mutants.sh integration   # scripts/mutations.py: hand-made bugs against the pytest suite
#   scripts/mutants.sh               # both
#
# cargo-mutants changes one operator, constant or function body at a time
# in the files below and runs `cargo test`; every "MISSED" line is code
# whose behaviour no unit test pins down (results in .tmp/mutants/). The
# integration part breaks the guarantees the README makes, one at a time,
# and runs the pytest tests named for each.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
what=${1:-all}

# The pure core: DataJoint's format, text cutting, S3 keys, upload planning,
# S3 error answers, object listing and deletion rules, the config.
CORE=(src/datajoint/hash.rs src/datajoint/layout.rs src/text.rs src/store/s3/keys.rs src/store/s3/upload.rs
      src/store/s3/answers.rs src/ops/objects.rs src/config.rs)

if [ "$what" = unit ] || [ "$what" = all ]; then
  command -v cargo-mutants >/dev/null 2>&1 || cargo install cargo-mutants --locked
  args=()
  for f in "${CORE[@]}"; do args+=(-f "$f"); done
  cargo mutants "${args[@]}" --timeout 120 -o .tmp/mutants || true
  echo "== survivors (MISSED): $(wc -l < .tmp/mutants/mutants.out/missed.txt)"
  cat .tmp/mutants/mutants.out/missed.txt
fi
if [ "$what" = integration ] || [ "$what" = all ]; then
  scripts/setup.sh --python
  .venv/bin/python scripts/mutations.py
fi
