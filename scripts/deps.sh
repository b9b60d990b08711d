#!/bin/sh
# SPDX-License-Identifier: MIT
# Install, idempotently, every Debian package ivsock needs to build and test.
# netperf lives in Debian's non-free component: if no apt source enables it,
# this adds /etc/apt/sources.list.d/ivsock-non-free.sources (and says so).
set -eu

PKGS="build-essential pkg-config clang libcmocka-dev liburing-dev libsodium-dev
libinih-dev libjansson-dev libsystemd-dev valgrind qemu-system-x86 qemu-utils busybox-static
cpio kmod linux-image-amd64 linux-headers-amd64 linux-source netperf iperf3 iproute2
procps psmisc jq python3 gnuplot-nox socat util-linux libclang-rt-14-dev"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "deps: all $(echo $PKGS | wc -w) packages already installed"
	exit 0
fi
echo "deps: missing:$missing"

case "$missing" in *netperf*)
	if ! grep -rqs "non-free" /etc/apt/sources.list /etc/apt/sources.list.d/; then
		echo "deps: enabling Debian's non-free component for netperf" \
		     "(/etc/apt/sources.list.d/ivsock-non-free.sources)"
		$SUDO tee /etc/apt/sources.list.d/ivsock-non-free.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	fi
esac

echo "deps: apt-get update"
$SUDO apt-get update -qq
echo "deps: installing:$missing"
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
echo "deps: done"
