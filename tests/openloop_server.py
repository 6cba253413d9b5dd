"""A single-worker HTTP server for the open-loop generator's tests: one connection at a time, in arrival order,
so with a fixed service time it is an M/D/1 queue (the listen backlog is the queue). Standard library only.

--mode ok (sleep --service-ms, then 200), status500 (sleep, then 500), reset (read the request, then RST),
empty (read the request, then close with no byte of reply), hang (read the request, never answer).
--busy-log FILE: one JSON line per connection, {"accept": t, "close": t} on CLOCK_MONOTONIC: the intervals in which
the one worker was busy with it (it accepts the next connection right after closing this one).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import struct
import sys
import time


def read_request(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        rest += chunk
    return True


def reply(conn: socket.socket, status: int, reason: str) -> None:
    body = json.dumps({"ok": status == 200}).encode()
    conn.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                 "Connection: close\r\n\r\n".encode() + body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--service-ms", type=float, default=30.0)
    parser.add_argument("--mode", choices=("ok", "status500", "reset", "empty", "hang"), default="ok")
    parser.add_argument("--busy-log", default=None, help="write each connection's busy interval here")
    args = parser.parse_args()
    busy_log = open(args.busy_log, "a", encoding="utf-8") if args.busy_log else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(4096)
    print(json.dumps({"event": "listening", "port": args.port}), flush=True)
    hung = []
    while True:
        conn, _ = server.accept()
        accepted = time.monotonic()
        conn.settimeout(10)
        try:
            if not read_request(conn):
                conn.close()
                continue
            if args.mode == "hang":
                hung.append(conn)  # kept open, never answered
                continue
            if args.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif args.mode == "empty":
                conn.shutdown(socket.SHUT_WR)
            else:
                time.sleep(args.service_ms / 1000.0)
                reply(conn, 200, "OK") if args.mode == "ok" else reply(conn, 500, "Internal Server Error")
        except OSError:
            pass
        if args.mode != "hang":
            conn.close()
        if busy_log is not None:
            busy_log.write(json.dumps({"accept": accepted, "close": time.monotonic()}) + "\n")
            busy_log.flush()


if __name__ == "__main__":
    main()
