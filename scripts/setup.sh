#!/usr/bin/env bash
# Installs what the demo and the tests need on a Debian machine (as root):
# MariaDB server and client, the server headers (for the build's layout
# check), libcrypto's headers (MD5) and, with --python (what the tests need),
# a virtual environment with pytest (in random order: pytest-randomly),
# PyMySQL and DataJoint 0.14.9, strace and openssl (the thread and TLS
# tests), podman, podman-compose, runc, debootstrap and binutils (the
# container tests: tests/test_container.py), galera-4, rsync and iproute2
# (the cluster tests: tests/test_galera.py) plus the S3-compatible test
# server s3s-fs (built from crates.io, about 5 minutes the first time). Does
# nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

pkgs=()
have mariadbd || pkgs+=(mariadb-server)
have mariadb || pkgs+=(mariadb-client)
[ -f /usr/include/mariadb/server/mysql.h ] || pkgs+=(libmariadbd-dev)
# MD5 from the system libcrypto (the server links it too).
[ -f /usr/include/openssl/evp.h ] || pkgs+=(libssl-dev)
have pkg-config || pkgs+=(pkg-config)
if [ "${1:-}" = --python ]; then
  have strace || pkgs+=(strace)
  have openssl || pkgs+=(openssl)
  have python3 || pkgs+=(python3)
  python3 -c "import venv, ensurepip" >/dev/null 2>&1 || pkgs+=(python3-venv)
  have podman || pkgs+=(podman)
  have podman-compose || pkgs+=(podman-compose)
  # name resolution between the compose file's containers (CNI networks)
  [ -x /usr/lib/cni/dnsname ] || pkgs+=(golang-github-containernetworking-plugin-dnsname)
  have runc || pkgs+=(runc)
  have debootstrap || pkgs+=(debootstrap)
  have objdump || pkgs+=(binutils)
  [ -f /usr/lib/galera/libgalera_smm.so ] || pkgs+=(galera-4)
  have rsync || pkgs+=(rsync)
  have ss || pkgs+=(iproute2)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: these Debian packages are missing and installing them needs root: ${pkgs[*]}" >&2
    exit 1
  fi
  echo "setup: installing ${pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
have cargo || [ -x "$HOME/.cargo/bin/cargo" ] || { echo "setup: cargo not found; install the Rust toolchain" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
# The test command checks formatting and lints.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi

if [ "${1:-}" = --python ]; then
  if ! .venv/bin/python -c "import datajoint, pymysql, pytest, pytest_randomly" >/dev/null 2>&1 \
     || ! cmp -s tests/requirements.txt .venv/requirements.txt; then
    echo "setup: creating .venv with $(tr '\n' ' ' < tests/requirements.txt)"
    # .venv may be a symbolic link to a shared environment: venv refuses links
    python3 -m venv "$(readlink -f .venv)"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r tests/requirements.txt
    cp tests/requirements.txt .venv/requirements.txt
  fi
  # s3s-fs checks request signatures (a wrong secret is refused) and does
  # multipart uploads; 0.14.1 builds on rustc 1.95 (0.17 needs 1.96).
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "setup: installing s3s-fs 0.14.1 (about 5 minutes)"
    cargo install s3s-fs@0.14.1 --features binary --locked
  fi
fi
