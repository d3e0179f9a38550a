"""The base of every local stand-in: a real HTTP server on loopback with routes, a journal of what it
served, and faults that can be switched on over HTTP (`POST /_sim/faults`).

A stand-in subclasses `SimServer`, adds its routes with `add_route`, and keeps its own state under
`self.lock` (requests are served on several threads)."""
from __future__ import annotations

import json
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None

    def encode(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", self.content_type or "text/plain"
        if isinstance(self.body, bytes):
            return self.body, self.content_type or "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), self.content_type or "text/plain; charset=utf-8"
        return json.dumps(self.body, default=str).encode("utf-8"), self.content_type or "application/json"


Handler = Callable[[Request], Response]


@dataclass
class Faults:
    """What fraction of calls fail and how. Paths under /_sim/ never fail."""

    error_rate: float = 0.0
    error_statuses: list[int] = field(default_factory=lambda: [500, 503])
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    drop_rate: float = 0.0
    path_prefix: str = ""
    seed: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Faults":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Journal:
    """Every entry the stand-in chose to record, in order, with a sequence number."""

    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, **entry: Any) -> dict[str, Any]:
        with self._lock:
            entry = {"seq": len(self._entries) + 1, "at": time.time(), **entry}
            self._entries.append(entry)
            return entry

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)


class SimServer:
    """A stand-in: `with MySim() as sim: httpx.get(sim.base_url + ...)`, or `serve_forever()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lock = threading.RLock()
        self.journal = Journal()
        self.faults = Faults()
        self._rng = random.Random()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._httpd.handle_error = self._handle_error  # type: ignore[method-assign]
        self._thread: threading.Thread | None = None
        self.add_route("GET", "/_sim/journal", lambda request: Response(body=self.journal.entries()))
        self.add_route("GET", "/_sim/faults", lambda request: Response(body=self.faults.to_json()))
        self.add_route("POST", "/_sim/faults", self._set_faults)

    def _handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out, or whose connection a fault dropped, has gone away: that is the test, not a bug.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        ThreadingHTTPServer.handle_error(self._httpd, request, client_address)

    # -- routes -----------------------------------------------------------------------------------
    def add_route(self, method: str, pattern: str, handler: Handler) -> None:
        """`pattern` is a path with `{name}` placeholders, matched whole; values land in request.params."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method.upper(), re.compile(f"^{regex}$"), handler))

    def _set_faults(self, request: Request) -> Response:
        try:
            faults = Faults.from_json(request.json() or {})
        except (ValueError, TypeError) as exc:
            return Response(400, {"error": str(exc)})
        with self.lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
        return Response(body=faults.to_json())

    def dispatch(self, request: Request) -> Response:
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                return handler(request)
        return Response(404, {"errors": [{"code": "NotFound", "message": f"no route for {request.method} {request.path}"}]})

    def fault_for(self, request: Request) -> str | None:
        """'drop', 'slow', 'error' or None, drawn from the current fault settings."""
        if request.path.startswith("/_sim/"):
            return None
        with self.lock:
            faults = self.faults
            if faults.path_prefix and not request.path.startswith(faults.path_prefix):
                return None
            draw = self._rng.random()
            if draw < faults.drop_rate:
                return "drop"
            if draw < faults.drop_rate + faults.error_rate:
                return "error"
            if self._rng.random() < faults.slow_rate:
                return "slow"
        return None

    def error_response(self, request: Request) -> Response:
        """The answer to an injected error; stand-ins override it to speak their API's error shape."""
        with self.lock:
            status = self._rng.choice(self.faults.error_statuses)
        return Response(status, {"errors": [{"code": "InternalFailure", "message": "injected fault"}]})

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "SimServer":
        # serve_forever's default 0.5 s poll makes every stop() wait half a second, and test suites start
        # dozens of stand-ins; 50 ms costs nothing while idle.
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def serve_until_stopped(self) -> int:
        """Serve in the foreground until Ctrl-C or SIGTERM (how a container or systemd stops it: a normal
        end, not a crash); the exit code of `ordersync sim ...`."""
        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        return 0

    def __enter__(self) -> "SimServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- HTTP plumbing ----------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes; with Nagle on, a keep-alive client waits ~40 ms for each answer.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # the journal is the log
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                fault = sim.fault_for(request)
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "slow":
                    time.sleep(sim.faults.slow_seconds)
                try:
                    response = sim.error_response(request) if fault == "error" else sim.dispatch(request)
                except Exception as exc:  # a stand-in bug must answer 500, not hang the client
                    response = Response(500, {"errors": [{"code": "InternalFailure", "message": repr(exc)}]})
                body, content_type = response.encode()
                self.send_response(response.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    try:
                        self.wfile.write(body)
                    except (BrokenPipeError, ConnectionResetError):
                        # The client gave up (its timeout, a test's dropped connection): nothing to answer.
                        self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

        return _Handler
