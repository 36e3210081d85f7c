#!/usr/bin/env bash
# Runs every test of csi-gateway. Starts RabbitMQ and PostgreSQL when they are not running, and
# installs them from Debian's packages when they are absent, so that the suite passes on a fresh
# Debian machine with Rust.
set -euo pipefail
cd "$(dirname "$0")/.."

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=""
need_pkg() {
  dpkg -s "$1" >/dev/null 2>&1 && return 0
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# A C compiler and make, for the parts of the binary written in C.
./scripts/build-deps.sh

# Tools the tests call: xmllint for XSD validation of generated XML.
command -v xmllint >/dev/null || need_pkg libxml2-utils

# schemathesis for the schema-driven tests of the INPS WaaS API (tests/waas.rs), in a venv under
# the target folder; installed once, quiet when already there.
st_venv="${CARGO_TARGET_DIR:-target}/schemathesis-venv"
if [ ! -x "$st_venv/bin/schemathesis" ]; then
  echo "test.sh: installing schemathesis into $st_venv"
  command -v python3 >/dev/null || need_pkg python3
  python3 -m venv "$st_venv" 2>/dev/null || { rm -rf "$st_venv"; need_pkg python3-venv; python3 -m venv "$st_venv"; }
  "$st_venv/bin/python" -m pip install -q --disable-pip-version-check 'schemathesis>=4,<5'
fi
export CSI_GATEWAY_SCHEMATHESIS="$(cd "$st_venv/bin" && pwd)/schemathesis"

if ! port_open 5432; then
  echo "test.sh: starting PostgreSQL"
  command -v pg_ctlcluster >/dev/null || need_pkg postgresql
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 1 60); do port_open 5432 && break; sleep 1; done
fi
if ! port_open 5672; then
  echo "test.sh: starting RabbitMQ"
  command -v rabbitmq-server >/dev/null || need_pkg rabbitmq-server
  as_root rabbitmq-server -detached
  for _ in $(seq 1 90); do port_open 5672 && break; sleep 1; done
fi
port_open 5432 || { echo "test.sh: PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
port_open 5672 || { echo "test.sh: RabbitMQ is not reachable on 127.0.0.1:5672" >&2; exit 1; }

export CSI_GATEWAY_REFERENCE="${CSI_GATEWAY_REFERENCE:-$(cd .. && pwd)/shared/reference}"
cargo test --workspace --all-targets "$@"
