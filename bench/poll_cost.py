#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# poll_cost.py HOST PORT N CALLS: open N TCP connections to HOST:PORT (an
# echo server), exchange 64 bytes on each, then time CALLS calls of poll()
# with timeout 0 over all N descriptors (nothing readable) and print
# "poll N=<n> us_per_call=<median of 5 batches>". Run under ivsock-run or
# not: bench/poll-cost compares the two (docs/bench.md).
import select
import socket
import statistics
import sys
import time

host, port, n, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
conns = []
for _ in range(n):
    s = socket.create_connection((host, port))
    s.sendall(b"x" * 64)
    got = b""
    while len(got) < 64:
        b = s.recv(64 - len(got))
        if not b:
            sys.exit("poll_cost: connection closed")
        got += b
    conns.append(s)
p = select.poll()
for s in conns:
    p.register(s.fileno(), select.POLLIN)
batches = []
for _ in range(5):
    t = time.perf_counter()
    for _ in range(calls):
        if p.poll(0):
            sys.exit("poll_cost: something readable")
    batches.append((time.perf_counter() - t) / calls * 1e6)
print(f"poll N={n} us_per_call={statistics.median(batches):.2f}", flush=True)
for s in conns:
    s.close()
