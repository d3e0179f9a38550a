"""/healthz, /readyz and /metrics on a small HTTP server in a background thread.

/healthz answers while the process can serve a request at all (the container HEALTHCHECK and a
liveness probe); /readyz says whether the daemon is doing its job (store reachable, rules loaded,
recent polls), with the reasons as JSON so that `curl` shows an operator what is wrong.
"""
from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import structlog

from daemon.service.metrics import CONTENT_TYPE

Readiness = Callable[[], "tuple[bool, dict[str, Any]]"]

log = structlog.get_logger("ordersync.http")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", "ok\n")
        elif path == "/readyz":
            try:
                ok, details = self.server.readiness()
                body = json.dumps({"ready": bool(ok), **details}, sort_keys=True, default=str) + "\n"
            except Exception as exc:  # a broken check is "not ready", never a dead server
                ok = False
                body = json.dumps({"ready": False, "error": f"readiness check failed: {type(exc).__name__}: {exc}"}) + "\n"
            self._send(200 if ok else 503, "application/json", body)
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE, self.server.render_metrics())
        else:
            self._send(404, "text/plain; charset=utf-8", "not found: try /healthz, /readyz or /metrics\n")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _send(self, status: int, content_type: str, body: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes hit these endpoints every few seconds; an access line each would drown the job lines.
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], readiness: Readiness, render_metrics: Callable[[], str]) -> None:
        self.readiness = readiness
        self.render_metrics = render_metrics
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)


class HttpServer:
    """Serves until `stop()`. `port` is the bound port (useful with port 0)."""

    def __init__(self, host: str, port: int, readiness: Readiness, render_metrics: Callable[[], str]) -> None:
        self._server = _Server((host, port), readiness, render_metrics)  # OSError when the port is taken
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="ordersync-http", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "HttpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "HttpServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
