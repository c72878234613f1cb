"""The small internet for the escape suite, run inside its own network namespace.

Serves, on addresses the test put on this namespace's loopback (198.18.1.0/24):
a logging DNS server (198.18.1.53), HTTP on :80 and TLS on :443 for allowed.test
(198.18.1.10) and denied.test (198.18.1.20), a TCP banner on 198.18.1.10:2222, and two
package registries over TLS, registry.npm.test (198.18.1.30) and pypi.test (198.18.1.40),
serving whatever files a test put under ``<dir>/sites/<name>/`` (test_presets_in_sandbox.py).
Every DNS question is appended to ``<dir>/dns.log``; ``<dir>/ready`` appears when listening.
Standalone on purpose: it must not import the code under test.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

ZONE = {
    "allowed.test": "198.18.1.10",
    "denied.test": "198.18.1.20",
    "other.allowed.test": "198.18.1.10",
    "rebind.test": "127.0.0.1",
    "meta.test": "169.254.169.254",
    "private.test": "10.1.2.3",
    "git.test": "198.18.1.10",
    "registry.npm.test": "198.18.1.30",
    "pypi.test": "198.18.1.40",
}
REGISTRIES = {"registry.npm.test": "198.18.1.30", "pypi.test": "198.18.1.40"}


def dns_server(log: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("198.18.1.53", 53))
    lock = threading.Lock()
    while True:
        data, addr = sock.recvfrom(2048)
        try:
            pos, labels = 12, []
            while data[pos]:
                labels.append(data[pos + 1 : pos + 1 + data[pos]].decode())
                pos += 1 + data[pos]
            name = ".".join(labels).lower()
            qtype = struct.unpack_from("!H", data, pos + 1)[0]
            question = data[12 : pos + 5]
        except Exception:
            continue
        with lock, log.open("a") as f:
            f.write(f"{name} {qtype}\n")
        ip = ZONE.get(name)
        rcode = 0 if ip else 3
        answers = b""
        if ip and qtype == 1:
            answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ip)
        head = struct.pack(
            "!HHHHHH",
            struct.unpack_from("!H", data)[0],
            0x8180 | rcode,
            1,
            1 if answers else 0,
            0,
            0,
        )
        sock.sendto(head + question + answers, addr)


class QuietHandler(BaseHTTPRequestHandler):
    def reply(self, body: bytes, kind: str = "text/plain") -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def http_handler(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.reply(f"hello from {name} host={self.headers.get('Host')}\n".encode())

    return Handler


def static_handler(root: Path) -> type[BaseHTTPRequestHandler]:
    """Files under ``root``; a directory answers with its index.json or index.html."""
    kinds = {".json": "application/json", ".html": "text/html"}

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            rel = unquote(self.path.split("?", 1)[0]).strip("/")
            path = (root / rel).resolve()
            if path.is_dir():
                path = next(
                    (path / n for n in ("index.json", "index.html") if (path / n).is_file()), path
                )
            if not path.is_relative_to(root.resolve()) or not path.is_file():
                self.send_error(404)
                return
            self.reply(path.read_bytes(), kinds.get(path.suffix, "application/octet-stream"))

    return Handler


class QuietServer(ThreadingHTTPServer):
    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); there is no DNS here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]  # type: ignore[assignment]


def serve_http(ip: str, name: str, certs: Path, handler: type[BaseHTTPRequestHandler]) -> None:
    plain = QuietServer((ip, 80), handler)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    tls = QuietServer((ip, 443), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / f"{name}.pem", certs / f"{name}.key")
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    threading.Thread(target=tls.serve_forever, daemon=True).start()


class Banner(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"SSH-2.0-fake\r\n")


def main() -> None:
    workdir = Path(sys.argv[1])
    serve_http("198.18.1.10", "allowed.test", workdir, http_handler("allowed.test"))
    serve_http("198.18.1.20", "denied.test", workdir, http_handler("denied.test"))
    for name, ip in REGISTRIES.items():
        (workdir / "sites" / name).mkdir(parents=True, exist_ok=True)
        serve_http(ip, name, workdir, static_handler(workdir / "sites" / name))
    banner = socketserver.ThreadingTCPServer(("198.18.1.10", 2222), Banner)
    threading.Thread(target=banner.serve_forever, daemon=True).start()
    threading.Thread(target=dns_server, args=(workdir / "dns.log",), daemon=True).start()
    (workdir / "ready").write_text("ok")
    threading.Event().wait()


if __name__ == "__main__":
    main()
