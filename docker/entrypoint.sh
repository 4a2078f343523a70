#!/bin/bash
# Entrypoint of the dj_udf image. On the first start (an empty data folder)
# it initializes MariaDB, applies /usr/share/dj_udf/install.sql, stores the
# config's purge_key in dj_udf.purge_key, creates the missing folders of the
# config's file stores, sets up the accounts named by the environment and
# runs /docker-entrypoint-initdb.d/*.sql and *.sh; then it runs the server.
#
# Environment (read on the first start only):
#   MARIADB_ROOT_PASSWORD[_FILE]  root's password; also creates root@'%'.
#                                 Without it root logs in through the socket only.
#   MARIADB_USER, MARIADB_PASSWORD[_FILE]
#                                 an account for pipelines: EXECUTE on dj_udf.*
#                                 and ALL on the databases matching DJ_USER_SCHEMAS
#   DJ_USER_SCHEMAS               space-separated database name patterns (LIKE
#                                 syntax) for that account; default '<user>\_%'
#   DJ_UDF_CONFIG                 the config file (default /etc/dj_udf/dj_udf.json)
set -euo pipefail

log() { echo "dj_udf entrypoint: $*" >&2; }
die() { log "$*"; exit 1; }

# "docker run IMAGE --some-option" passes options to the server.
if [ "${1:0:1}" = - ]; then set -- mariadbd "$@"; fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then exec "$@"; fi

config=${DJ_UDF_CONFIG:-/etc/dj_udf/dj_udf.json}
export DJ_UDF_CONFIG=$config
datadir=$("$@" --verbose --help 2>/dev/null | awk '$1 == "datadir" { print $2 }')
datadir=${datadir:-/var/lib/mysql}
datadir=${datadir%/}

file_env() { # VAR: VAR, or the contents of the file VAR_FILE names
  local var=$1 file_var="${1}_FILE"
  if [ -n "${!file_var:-}" ]; then
    [ -z "${!var:-}" ] || die "both $var and $file_var are set"
    printf -v "$var" '%s' "$(cat "${!file_var}")"
  fi
}

# A SQL string literal: backslashes and quotes escaped (the server's default
# sql_mode, which the initialization runs with).
sql_string() {
  local s=${1//\\/\\\\}
  printf "'%s'" "${s//\'/\\\'}"
}

first_start() {
  [ -r "$config" ] || die "the config file $config is missing or unreadable: mount it (see README.md, 'Containers')"
  su -s /bin/sh mysql -c "test -r '$config'" \
    || die "the config file $config is not readable by the server's user mysql (uid $(id -u mysql)): chown or chmod it on the host"
  file_env MARIADB_ROOT_PASSWORD
  file_env MARIADB_PASSWORD
  if [ -n "${MARIADB_USER:-}" ] && [ -z "${MARIADB_PASSWORD:-}" ]; then die "MARIADB_USER needs MARIADB_PASSWORD"; fi

  log "initializing $datadir"
  mkdir -p "$datadir"
  chown mysql:mysql "$datadir"
  # removed when the initialization has finished: a start after a failed one
  # is refused instead of running a half-initialized server
  touch "$datadir/$marker"
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db --auth-root-authentication-method=socket \
    --skip-name-resolve >/dev/null
  local sock=/run/mysqld/init.sock
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  "$@" --user=mysql --datadir="$datadir" --skip-networking --socket="$sock" --skip-log-bin &
  local pid=$!
  local client=(mariadb --protocol=socket --socket="$sock" -uroot)
  local up=
  for _ in $(seq 1 240); do
    if "${client[@]}" -e 'SELECT 1' >/dev/null 2>&1; then up=1; break; fi
    kill -0 "$pid" 2>/dev/null || die "the server stopped during initialization"
    sleep 0.5
  done
  [ -n "$up" ] || die "the server did not accept connections within 2 minutes of its initialization"

  log "applying install.sql"
  "${client[@]}" < /usr/share/dj_udf/install.sql

  # The purge key and the file stores' folders, read from the config file
  # by the server's JSON functions.
  local cfg
  cfg="CONVERT(UNHEX('$(od -An -v -tx1 "$config" | tr -d ' \n')') USING utf8mb4)"
  "${client[@]}" -e "INSERT IGNORE INTO dj_udf.purge_key
      SELECT JSON_VALUE($cfg, '\$.purge_key') FROM DUAL WHERE JSON_VALUE($cfg, '\$.purge_key') IS NOT NULL"
  local dirs
  dirs=$("${client[@]}" -N -e "
      SELECT IF(protocol = 'file', location, NULL) AS d
        FROM JSON_TABLE(JSON_EXTRACT($cfg, '\$.stores.*'), '\$[*]' COLUMNS (
               protocol varchar(16) PATH '\$.protocol', location varchar(4096) PATH '\$.location')) s
      UNION SELECT stage FROM JSON_TABLE(JSON_EXTRACT($cfg, '\$.stores.*'), '\$[*]' COLUMNS (
               stage varchar(4096) PATH '\$.stage')) s
      UNION SELECT d FROM JSON_TABLE(JSON_EXTRACT($cfg, '\$.import_dirs'), '\$[*]' COLUMNS (d varchar(4096) PATH '\$')) i
      UNION SELECT d FROM JSON_TABLE(JSON_EXTRACT($cfg, '\$.export_dirs'), '\$[*]' COLUMNS (d varchar(4096) PATH '\$')) e")
  while IFS= read -r d; do
    case "$d" in /*) ;; *) continue ;; esac
    [ ! -e "$d" ] || continue
    log "creating store folder $d"
    mkdir -p "$d" && chown mysql:mysql "$d"
  done <<< "$dirs"

  if [ -n "${MARIADB_ROOT_PASSWORD:-}" ]; then
    local pw
    pw=$(sql_string "$MARIADB_ROOT_PASSWORD")
    "${client[@]}" -e "
      ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD($pw);
      CREATE USER IF NOT EXISTS root@'%' IDENTIFIED BY $pw;
      GRANT ALL PRIVILEGES ON *.* TO root@'%' WITH GRANT OPTION;"
  fi
  if [ -n "${MARIADB_USER:-}" ]; then
    local user pw schemas
    user=$(sql_string "$MARIADB_USER")
    pw=$(sql_string "$MARIADB_PASSWORD")
    "${client[@]}" -e "CREATE USER IF NOT EXISTS $user@'%' IDENTIFIED BY $pw; GRANT EXECUTE ON dj_udf.* TO $user@'%';"
    read -r -a schemas <<< "${DJ_USER_SCHEMAS:-${MARIADB_USER}\\_%}"
    for s in "${schemas[@]}"; do
      "${client[@]}" -e "GRANT ALL PRIVILEGES ON \`${s//\`/\`\`}\`.* TO $user@'%'"
    done
  fi

  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sql) log "running $f"; "${client[@]}" < "$f" ;;
      *.sh) log "running $f"; . "$f" ;;
      *) [ -e "$f" ] && log "ignoring $f" ;;
    esac
  done

  kill "$pid"
  wait "$pid" || true
  rm "$datadir/$marker"
  log "initialized"
}

marker=.dj_udf-initializing
if [ -e "$datadir/$marker" ]; then
  die "the initialization of $datadir did not finish (see the log of the first start): empty that volume to start again"
fi
if [ ! -d "$datadir/mysql" ]; then first_start "$@"; fi
exec "$@" --user=mysql
