#!/usr/bin/env bash
# Starts or stops a throwaway MariaDB server with its own datadir, socket and
# port, loading dj_udf.so from its own plugin_dir. Used by the demo and tests.
#
#   scripts/server.sh start DIR PORT LIBRARY CONFIG [MARIADBD-OPTION...]   # prints the socket path
#   scripts/server.sh stop DIR
#
# Options after CONFIG go to mariadbd after the defaults here, so they can
# override them (--character-set-server=latin1, --log-bin, --server-id=2 …).
set -euo pipefail

cmd=${1:?usage: server.sh start DIR PORT LIBRARY CONFIG | stop DIR}
dir=${2:?DIR missing}

find_bin() {
  for b in "$@"; do
    if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
    for d in /usr/sbin /usr/bin /usr/local/bin; do
      if [ -x "$d/$b" ]; then echo "$d/$b"; return 0; fi
    done
  done
  echo "none of $* found: install mariadb-server" >&2
  return 1
}

case "$cmd" in
start)
  port=${3:?PORT missing}
  lib=${4:?LIBRARY missing}
  config=${5:?CONFIG missing}
  shift 5
  mariadbd=$(find_bin mariadbd mysqld)
  installdb=$(find_bin mariadb-install-db mysql_install_db)
  admin=$(find_bin mariadb-admin mysqladmin)
  client=$(find_bin mariadb mysql)
  mkdir -p "$dir/plugin" "$dir/tmp"
  dir=$(cd "$dir" && pwd)
  # The freshly built library, under the name install.sql loads.
  cp "$lib" "$dir/plugin/dj_udf.so"
  user_opt=()
  if [ "$(id -u)" = 0 ]; then user_opt=(--user=root); fi
  if [ ! -d "$dir/data/mysql" ]; then
    "$installdb" --no-defaults --datadir="$dir/data" "${user_opt[@]}" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install-db.log" 2>&1 \
      || { cat "$dir/install-db.log" >&2; exit 1; }
  fi
  DJ_UDF_CONFIG="$config" nohup "$mariadbd" --no-defaults "${user_opt[@]}" \
    --datadir="$dir/data" --socket="$dir/mysql.sock" --port="$port" --bind-address=127.0.0.1 \
    --pid-file="$dir/mariadbd.pid" --log-error="$dir/error.log" --tmpdir="$dir/tmp" \
    --plugin-dir="$dir/plugin" --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --innodb-buffer-pool-size=64M --innodb-log-file-size=48M --max-allowed-packet=1G \
    --skip-name-resolve --lower-case-table-names=0 "$@" >/dev/null 2>&1 &
  for _ in $(seq 1 120); do
    if "$admin" --no-defaults --socket="$dir/mysql.sock" -uroot ping >/dev/null 2>&1; then
      "$client" --no-defaults --socket="$dir/mysql.sock" -uroot < "$(dirname "$0")/../sql/install.sql"
      echo "$dir/mysql.sock"
      exit 0
    fi
    sleep 0.5
  done
  echo "MariaDB did not start; its log says:" >&2
  tail -n 30 "$dir/error.log" >&2 || true
  exit 1
  ;;
stop)
  if [ -f "$dir/mariadbd.pid" ]; then
    pid=$(cat "$dir/mariadbd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 120); do
      kill -0 "$pid" 2>/dev/null || exit 0
      sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  ;;
*)
  echo "unknown command $cmd" >&2; exit 2 ;;
esac
