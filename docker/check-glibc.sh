#!/bin/sh
# check-glibc.sh LIBRARY: fails when LIBRARY needs a newer glibc symbol
# version than this system's glibc provides.
set -eu
lib=$1
have=$(getconf GNU_LIBC_VERSION | awk '{ print $2 }')
need=$(grep -ao 'GLIBC_2\.[0-9][0-9.]*' "$lib" | sed 's/^GLIBC_//' | sort -uV | tail -n 1)
newest=$(printf '%s\n%s\n' "$need" "$have" | sort -V | tail -n 1)
if [ "$newest" != "$have" ]; then
  echo "check-glibc: $lib needs glibc $need, this image has $have: build the library on a system with glibc <= $have" >&2
  exit 1
fi
echo "check-glibc: $lib needs glibc $need, this image has $have"
