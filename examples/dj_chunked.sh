#!/usr/bin/env bash
# Moves objects of any size in and out of a dj_udf store with the mariadb
# command-line client and coreutils only.
#
#   dj_chunked.sh put STORE SCHEMA FILE [NAME]    prints the attachment's hash (hex)
#   dj_chunked.sh get STORE SCHEMA HASH FILE      writes the attachment to FILE
#
# Connection options come from MARIADB_OPTS (for example
# "--host=db.lab --user=me --password=..."), or from ~/.my.cnf.
#
# put sends PART_SIZE bytes per statement (default 8 MiB), base64-encoded
# (FROM_BASE64), so a statement is about 1.34 x PART_SIZE: keep PART_SIZE
# below 3/4 of the server's max_allowed_packet, and of the client's (the
# mariadb client's own default is 16 MiB). It computes the attachment hash
# MD5(name, 0x00, bytes) with md5sum and gives it to the finish, which
# refuses the object if the server received other bytes; on failure the
# upload is aborted.
#
# get reads CHUNK bytes per statement (default 8 MiB) with
# dj_udf.read_range, whose call for the last bytes fails if the stored
# object does not hash as its tracking row says; then it hashes what it
# received and compares with HASH itself. The file gets its name only
# when both agree.
set -euo pipefail

PART_SIZE=${PART_SIZE:-$((8 << 20))}
CHUNK=${CHUNK:-$((8 << 20))}
read -r -a opts <<< "${MARIADB_OPTS:-}"

sql() { mariadb "${opts[@]}" --batch --skip-column-names --raw "$@"; }
# A SQL string literal: backslashes and quotes doubled.
quote() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\'\'}"; }
die() { echo "dj_chunked.sh: $*" >&2; exit 1; }

put() {
  local store=$1 schema=$2 file=$3 name=${4:-$(basename "$3")}
  [ -f "$file" ] || die "$file is not a file"
  local size parts expected upload
  size=$(stat -c %s "$file")
  parts=$(( size == 0 ? 1 : (size + PART_SIZE - 1) / PART_SIZE ))
  expected=$({ printf '%s\0' "$name"; cat "$file"; } | md5sum | cut -c1-32)
  upload=$(sql -e "CALL dj_udf.upload_open($(quote "$store"), $(quote "$schema"), $(quote "$name"), $PART_SIZE, @u); SELECT @u;")
  # One session for the parts and the finish; the parts are read from the
  # file one at a time, never all at once.
  if ! {
    for ((n = 1; n <= parts; n++)); do
      printf "CALL dj_udf.upload_part('%s', %d, FROM_BASE64('" "$upload" "$n"
      dd if="$file" bs="$PART_SIZE" skip=$((n - 1)) count=1 status=none | base64 -w0
      printf "'), @m);\n"
      echo "$n/$parts" >&2
    done
    echo "CALL dj_udf.upload_finish('$upload', $parts, NULL, UNHEX('$expected'), @h);"
    echo "SELECT LOWER(HEX(@h));"
  } | sql; then
    sql -e "CALL dj_udf.upload_abort('$upload')" >/dev/null 2>&1 || true
    die "upload of $file failed (aborted)"
  fi
}

get() {
  local store=$1 schema=$2 hash=$3 file=$4
  local row size name got offset=0
  row=$(sql -e "SELECT size, TO_BASE64(attachment_name) FROM \`$schema\`.\`~external_$store\` WHERE hash = UNHEX($(quote "$hash"))")
  [ -n "$row" ] || die "no tracking row for $hash in $schema.~external_$store"
  size=${row%%$'\t'*}
  name=$(printf '%s' "${row#*$'\t'}" | base64 -d)
  tmp="$file.part$$"
  trap 'rm -f "${tmp:-}" "${tmp:-}.chunk"' EXIT
  : > "$tmp"
  while ((offset < size)); do
    # One row: "<size><TAB><bytes>\n", written raw; the bytes are cut out by count.
    sql -e "CALL dj_udf.read_range($(quote "$store"), $(quote "$schema"), UNHEX($(quote "$hash")), $offset, $CHUNK)" > "$tmp.chunk"
    tail -c +$(( ${#size} + 2 )) "$tmp.chunk" | head -c -1 >> "$tmp"
    offset=$(stat -c %s "$tmp")
    echo "$offset/$size" >&2
  done
  [ "$(stat -c %s "$tmp")" = "$size" ] || die "received $(stat -c %s "$tmp") bytes, the object has $size"
  got=$({ printf '%s\0' "$name"; cat "$tmp"; } | md5sum | cut -c1-32)
  [ "$got" = "${hash,,}" ] || die "the bytes received hash to $got, not $hash: discarded"
  mv "$tmp" "$file"
}

case "${1:-}" in
  put) shift; [ $# -ge 3 ] || die "usage: put STORE SCHEMA FILE [NAME]"; put "$@" ;;
  get) shift; [ $# -eq 4 ] || die "usage: get STORE SCHEMA HASH FILE"; get "$@" ;;
  *) die "usage: dj_chunked.sh put STORE SCHEMA FILE [NAME] | get STORE SCHEMA HASH FILE" ;;
esac
