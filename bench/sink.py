"""A plain-HTTP sink for the benchmarks, with just enough Atlas API for `atlas-ci upload`.

    sink.py PORT LOGFILE

A PUT anywhere: the whole body is read in 4 MiB ``recv_into`` calls (a real copy, as any
server makes), its byte count appended to LOGFILE, and only then 201 is answered, so the
driver can check that every byte arrived. nginx's ``return 201`` answers before the body
and discards it in 4 KiB reads, which made nginx, not the client, the bottleneck.

The API (authenticate, artifact read/create, version create handing out an upload_path
on this same sink, 404 for anything else such as a search) lets `atlas-ci upload` run its
whole flow against the very sink `curl -T` is timed against.
"""

import json
import socket
import sys
import threading

READ = 4 << 20
lock = threading.Lock()
versions = [0]


def answer(conn: socket.socket, status: int, payload: object) -> None:
    body = json.dumps(payload).encode()
    reason = {200: "OK", 201: "Created", 404: "Not Found"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    conn.sendall(head.encode() + body)


def api(conn: socket.socket, method: str, path: str, body: bytes, port: int) -> None:
    parts = path.split("?")[0].strip("/").split("/")
    if method == "GET" and parts == ["api", "v1", "authenticate"]:
        answer(conn, 200, {"user": {"username": "bench"}})
    elif method == "GET" and parts[:3] == ["api", "v1", "artifacts"] and len(parts) == 5:
        answer(conn, 200, {"artifact": {"username": parts[3], "name": parts[4]}})
    elif method == "POST" and parts == ["api", "v1", "artifacts"]:
        answer(conn, 201, json.loads(body))
    elif method == "POST" and parts[:3] == ["api", "v1", "artifacts"] and len(parts) == 6:
        sent = json.loads(body)["artifact_version"]
        with lock:
            versions[0] += 1
            number = versions[0]
        user, name, atype = parts[3:6]
        answer(
            conn,
            201,
            {
                "username": user,
                "name": name,
                "artifact_type": atype,
                "id": sent["id"],
                "version": number,
                "metadata": sent["metadata"],
                "file": sent["file"],
                "slug": f"{user}/{name}/{atype}/{number}",
                "upload_path": f"http://127.0.0.1:{port}/binstore/{number}?sig=bench",
            },
        )
    else:
        answer(conn, 404, {"errors": ["not found"]})


def handle(conn: socket.socket, log: str, port: int) -> None:
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(65536)
            if not piece:
                return
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path = lines[0].split(" ")[:2]
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if method != "PUT":
            while len(rest) < length:
                rest += conn.recv(65536)
            api(conn, method, path, rest, port)
            return
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
        threading.Thread(target=handle, args=(conn, log, port), daemon=True).start()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
