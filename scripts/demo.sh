#!/usr/bin/env bash
# Builds the library, starts a throwaway MariaDB with local file stores and
# runs examples/seed.sql end to end, printing each statement and its result.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/setup.sh
echo "== building"
cargo build --release --locked

base=$(pwd)/.tmp/demo
scripts/server.sh stop "$base/server" 2>/dev/null || true
rm -rf "$base"
mkdir -p "$base"/{stores/attach,stores/data,stores/blobs,stage/session1,import,export}
# sample inputs: a "scan" on the server and an image file in the stage
head -c 200000 /dev/urandom > "$base/import/scan_0002.png"
head -c 500000 /dev/urandom > "$base/stage/session1/image_0001.tif"
purge_key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat > "$base/dj_udf.json" <<JSON
{
  "stores": {
    "localattach": {"protocol": "file", "location": "$base/stores/attach"},
    "data": {"protocol": "file", "location": "$base/stores/data", "stage": "$base/stage"},
    "main": {"protocol": "file", "location": "$base/stores/blobs"}
  },
  "import_dirs": ["$base/import"],
  "export_dirs": ["$base/export"],
  "purge_key": "$purge_key"
}
JSON
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 33306)
echo "== starting MariaDB on 127.0.0.1:$port (datadir $base/server/data), config $base/dj_udf.json"
trap 'scripts/server.sh stop "$base/server"' EXIT
sock=$(scripts/server.sh start "$base/server" "$port" target/release/libdj_udf.so "$base/dj_udf.json")
client=(mariadb --no-defaults --socket="$sock" -uroot)
"${client[@]}" -e "INSERT INTO dj_udf.purge_key VALUES ('$purge_key')"
"${client[@]}" -t -e "SELECT dj_version() AS version, CONVERT(dj_stores() USING utf8mb4) AS stores\G"

echo "== running examples/seed.sql"
sed -e "s|@IMPORT@|$base/import|g" -e "s|@STAGE@|$base/stage|g" -e "s|@EXPORT@|$base/export|g" examples/seed.sql \
  | "${client[@]}" -v -v -v -t

echo "== objects in the stores, laid out as DataJoint lays them out"
(cd "$base/stores" && find . -type f | sort)
echo "== exported files"
ls -l "$base/export"
echo "== demo finished: every statement succeeded"
