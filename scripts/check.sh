#!/bin/bash
# SPDX-License-Identifier: MIT
# The README's test command: install missing Debian packages (build tools
# included, so a machine without make works), then `make check`: the build,
# unit, lab and real-VM suites, then the ASan/UBSan and TSan builds.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "check: run as root: the lab uses network namespaces and QEMU" >&2; exit 1; }
scripts/deps.sh
exec make --no-print-directory check
