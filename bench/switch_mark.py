#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The mark of bench/switch-pause, without starting a process at it.

switch_mark.py CTL_SOCK PORT AFTER_S MARKFILE demote|resize|none

Connects to ivsockd's control socket at once, sleeps AFTER_S seconds, then
writes the time (ns, CLOCK_REALTIME as `date +%s%N`) to MARKFILE and asks
for the channels list and, for demote/resize, switches the connected
channel to PORT (resize: to a 1 MiB ring); `none` (the control runs) asks
the same list and then demotes a channel that does not exist. Prints what
it did. The protocol: hostd/ctl_proto.h (header, then JSON).
"""
import json
import os
import socket
import struct
import sys
import time

MAGIC = 0x4D535649
HDR = struct.Struct("<IHHIIiI")
CHANNELS, DEMOTE, PROMOTE = 0x104, 0x105, 0x106


def call(s, seq, typ, payload=b""):
    s.sendall(HDR.pack(MAGIC, 1, typ, len(payload), seq, 0, 0) + payload)
    hdr = b""
    while len(hdr) < HDR.size:
        chunk = s.recv(HDR.size - len(hdr))
        if not chunk:
            raise SystemExit("switch_mark: control socket closed")
        hdr += chunk
    _, _, _, n, _, status, _ = HDR.unpack(hdr)
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise SystemExit("switch_mark: control socket closed")
        body += chunk
    return status, json.loads(body) if body else {}


def main():
    if len(sys.argv) != 6 or sys.argv[5] not in ("demote", "resize", "none"):
        raise SystemExit(__doc__)
    path, port, after, mark, kind = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), \
        sys.argv[4], sys.argv[5]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    time.sleep(after)
    with open(mark + ".tmp", "w") as f:
        f.write("%d\n" % time.time_ns())
    os.rename(mark + ".tmp", mark)
    _, j = call(s, 1, CHANNELS)
    idx = next((c["index"] for c in j.get("channels", [])
                if c["tuple"]["dport"] == port and c["state"] == "connected"), None)
    if kind == "none" or idx is None:
        st, _ = call(s, 2, DEMOTE, b"999999")
    elif kind == "demote":
        st, _ = call(s, 2, DEMOTE, str(idx).encode())
    else:
        st, _ = call(s, 2, PROMOTE, ("%d %d" % (idx, 1 << 20)).encode())
    print("switch_mark: %s channel %s: status %d" % (kind, idx, st))


if __name__ == "__main__":
    main()
