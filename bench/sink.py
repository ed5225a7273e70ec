"""A plain-HTTP PUT sink for the benchmarks: reads the whole body, then answers 201.

    sink.py PORT LOGFILE

It reads each body in 4 MiB ``recv_into`` calls (a real copy, as any server makes) and
appends the byte count to LOGFILE before it answers, so the driver can check that every
byte arrived. nginx's ``return 201`` answers before the body and discards it in 4 KiB
reads, which made nginx, not the client, the bottleneck of a plain-HTTP upload.
"""

import socket
import sys
import threading

READ = 4 << 20


def handle(conn: socket.socket, log: str) -> None:
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                return
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if headers.get("expect", "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        left = length - len(rest)
        buf = bytearray(READ)
        while left > 0:
            n = conn.recv_into(buf, min(left, READ))
            if not n:
                break
            left -= n
        with open(log, "a") as f:
            f.write(f"{length - left}\n")
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def main(port: int, log: str) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(8)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=handle, args=(conn, log), daemon=True).start()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
