"""A DNS prober run in a host namespace: how long did the server go without answering?

``python netlab/dns_prober.py '{"server": S, "port": P, "qname": N, "interval": I}'`` asks
``N A`` every I seconds (0.05) over UDP, each with its own ID, and notes when a good answer
(NOERROR, at least one answer record) to any of its queries arrives. It prints
``{"event": "started"}``, runs until its stdin closes, then prints one JSON object: queries
sent, good answers, and ``max_gap``, the longest time in seconds without a good answer (from
the start, between answers, and up to the end). It is a process of its own (netlab/vitals.py
starts it), so the flood a test sends from its own process cannot delay the probes.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import sys
import time


def query(qid: int, qname: str) -> bytes:
    labels = b"".join(bytes([len(x)]) + x.encode() for x in qname.rstrip(".").split("."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"


def main() -> None:
    cfg = json.loads(sys.argv[1])
    server, port, qname = cfg["server"], int(cfg["port"]), cfg["qname"]
    interval = float(cfg.get("interval", 0.05))
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.connect((server, port))
    sock.setblocking(False)
    stdin = sys.stdin.fileno()
    start = last = time.monotonic()
    next_send = start
    sent = answered = 0
    max_gap = 0.0
    outstanding: set[int] = set()
    print(json.dumps({"event": "started"}), flush=True)
    while True:
        now = time.monotonic()
        if now >= next_send:
            qid = (sent * 7919 + 1) & 0xFFFF
            outstanding.add(qid)
            if len(outstanding) > 1000:
                outstanding.clear()
            with contextlib.suppress(OSError):  # refused while the server starts: a lost probe
                sock.send(query(qid, qname))
            sent += 1
            next_send = now + interval
        ready, _, _ = select.select([sock, stdin], [], [], max(0.0, next_send - now))
        if stdin in ready and not os.read(stdin, 4096):
            break
        if sock in ready:
            while True:
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, ConnectionRefusedError):
                    break
                if len(data) < 12:
                    continue
                qid, flags, _, ancount = struct.unpack("!HHHH", data[:8])
                if qid in outstanding and flags & 0x800F == 0x8000 and ancount:
                    outstanding.discard(qid)
                    t = time.monotonic()
                    max_gap = max(max_gap, t - last)
                    last = t
                    answered += 1
    end = time.monotonic()
    max_gap = max(max_gap, end - last)
    result = {"event": "result", "sent": sent, "answered": answered, "max_gap": round(max_gap, 3)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
