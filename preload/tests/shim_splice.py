#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# splice(2) through an accelerated socket: 1 MiB from a pipe into the socket
# and the echo back from the socket into a pipe, every byte compared.
# usage: shim_splice.py HOST PORT
import os
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
if not hasattr(os, "splice"):
    print("SKIP: no os.splice")
    sys.exit(77)
s = socket.create_connection((host, port))
data = bytes((i * 7 + (i >> 8)) & 255 for i in range(1 << 20))
r1, w1 = os.pipe()
r2, w2 = os.pipe()
sent = got = 0
out = bytearray()
while got < len(data):
    if sent < len(data):
        n = os.write(w1, data[sent:sent + 32768])
        k = 0
        while k < n:
            k += os.splice(r1, s.fileno(), n - k)
        sent += n
        if sent == len(data):
            s.shutdown(socket.SHUT_WR)
    n = os.splice(s.fileno(), w2, 65536)
    if n == 0:
        break
    out += os.read(r2, n)
    got += n
if bytes(out) != data:
    print("splice: mismatch after %d bytes" % len(out))
    sys.exit(1)
print("splice ok")
