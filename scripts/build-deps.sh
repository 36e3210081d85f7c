#!/usr/bin/env bash
# Installs what building csi-gateway needs beside Rust, from Debian's packages when it is absent: a
# C compiler and make (SQLite and jemalloc are compiled into the binary), and a C++ compiler for
# libFuzzer, which the fuzz targets under fuzz/ build (CI compiles them).
set -euo pipefail
command -v cc >/dev/null && command -v c++ >/dev/null && command -v make >/dev/null && exit 0
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
echo "build-deps.sh: installing C and C++ compilers and make (Debian's gcc, g++, make)" >&2
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc g++ make libc6-dev >/dev/null
