"""A fault-injecting HTTP proxy on loopback, placed in front of a backend (Pushgateway, OTLP/HTTP).

Clients talk to the proxy's URL instead of the backend's; the proxy forwards, delays or breaks
each request according to its current *mode*, which can be switched at any time from Python or
over a small control API. Stdlib only, one thread per client connection.

Python API::

    from stack.faultproxy import FaultProxy

    with FaultProxy("http://127.0.0.1:9091") as proxy:   # listens on 127.0.0.1:<free port>
        env["PUSHGATEWAY_URL"] = proxy.url
        proxy.delay(100)              # forward every request 100 ms late
        proxy.refuse()                # close the listener: connection refused
        proxy.blackhole()             # accept and read requests, never answer
        proxy.slow(5000)              # answer (forwarded) only after 5 s: past the client's timeout
        proxy.trickle(50)             # forward, then send the answer one byte every 50 ms
        proxy.status(401)             # answer 401 (or 500, 403, ...) without forwarding
        proxy.malformed("garbage")    # answer bytes that are not HTTP ("truncated", "close")
        proxy.passthrough()           # back to normal (the listener is reopened on the same port)
        proxy.stats()                 # {"mode": ..., "connections": n, "requests": n, ...}

The modes (``FaultProxy.set_mode(mode, **params)`` sets any of them):

==============  =======================================================================
``pass``        forward to the target and relay its answer (status, headers, body)
``delay``       wait ``delay_ms``, then forward: a slow but working backend
``refuse``      stop listening (and reset open connections): ``ConnectionRefusedError``
``blackhole``   accept and read the request, never answer (held up to ``hold_s``, then closed)
``slow``        forward, but answer after ``slow_ms`` (default 10 s): beyond any sane timeout
``trickle``     forward, then send the answer (status line and headers too) one byte every
                ``trickle_ms``: a per-read socket timeout never fires, only a total
                deadline stops the client
``status``      answer ``status`` (e.g. 500, 401, 403, 429) with a short text body, without
                forwarding; ``headers`` adds response headers (``Retry-After``, ...)
``malformed``   ``malformed="garbage"``: bytes that are not HTTP, then close;
                ``"truncated"``: a 200 whose body stops before its Content-Length, then close;
                ``"close"``: close the connection without a byte
==============  =======================================================================

The mode is read when a request arrives: switching modes never changes a request in flight.
Switching to ``refuse`` closes every open client connection (a crashed backend); leaving it
rebinds the same port. Every wait is interruptible: ``stop()`` ends blackholed and slow
requests at once, and a wait never outlasts ``hold_s`` (default 30 s).

Control API (``control_port=`` / ``--control-port``, a separate listener so that it still
answers in ``refuse`` mode)::

    GET  /fault   -> {"mode": "delay", "delay_ms": 100, ..., "stats": {...}}
    PUT  /fault   <- {"mode": "status", "status": 503}     (the set_mode parameters as JSON)

Command line::

    python -m stack.faultproxy --target http://127.0.0.1:9091 --listen-port 19091 \\
        [--mode delay --delay-ms 100] [--control-port 19092]

prints ``listening on http://127.0.0.1:19091`` (and the control URL) on stderr; SIGINT or
SIGTERM stops it. Both the listen address and the target must be loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from stack._proc import Service
from stack.net import is_loopback, stop_event

MODES = ("pass", "delay", "refuse", "blackhole", "slow", "trickle", "status", "malformed")
MALFORMED_KINDS = ("garbage", "truncated", "close")
GARBAGE = b"\x00\xff\xfeTHIS IS NOT HTTP\r\n\x01\x02\x03\r\n\r\n"
# Headers that describe one hop, never forwarded (RFC 9110 7.6.1), plus the ones we recompute.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
_UPSTREAM_TIMEOUT_S = 30.0
_ACCEPT_POLL_S = 0.1


class FaultProxyError(Exception):
    """Invalid configuration (mode, parameters, non-loopback address)."""


@dataclass(frozen=True)
class Fault:
    """One mode and its parameters; only the ones the mode uses matter."""

    mode: str = "pass"
    delay_ms: int = 0
    slow_ms: int = 10_000
    trickle_ms: int = 100
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    malformed: str = "garbage"
    hold_s: float = 30.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise FaultProxyError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.malformed not in MALFORMED_KINDS:
            raise FaultProxyError(
                f"unknown malformed kind {self.malformed!r}: use {', '.join(MALFORMED_KINDS)}"
            )
        if not 100 <= self.status <= 599:
            raise FaultProxyError(f"status must be 100-599, not {self.status}")
        if min(self.delay_ms, self.slow_ms, self.trickle_ms) < 0 or self.hold_s <= 0:
            raise FaultProxyError("delays must be >= 0 and hold_s > 0")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _require_loopback(host: str, what: str) -> None:
    if not is_loopback(host):
        raise FaultProxyError(f"{what} must be a loopback address, not {host!r}")


class FaultProxy(Service):
    """The proxy; a context manager (``start`` on enter, ``stop`` on exit). Thread-safe."""

    def __init__(
        self,
        target: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "pass",
        control_port: int | None = None,
        **params: Any,
    ) -> None:
        parsed = urllib.parse.urlsplit(target)
        if parsed.scheme != "http" or not parsed.hostname:
            raise FaultProxyError(f"target must be an http:// URL, not {target!r}")
        _require_loopback(parsed.hostname, "target")
        _require_loopback(host, "listen address")
        self.target = target.rstrip("/")
        self._target_host = parsed.hostname
        self._target_port = parsed.port or 80
        self._target_prefix = parsed.path.rstrip("/")
        self.host = host
        self.port = port
        self._fault = Fault(mode=mode, **params)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._changed = threading.Event()  # set (then cleared) on every mode switch
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._clients: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._counts: dict[str, int] = {"connections": 0, "requests": 0, "forwarded": 0}
        self._by_mode: dict[str, int] = {}
        self._control_port = control_port
        self._control: ThreadingHTTPServer | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        if self._accept_thread is not None:
            return self
        self._stopping.clear()
        self._open_listener()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="faultproxy-accept", daemon=True
        )
        self._accept_thread.start()
        if self._control_port is not None:
            self._control = _control_server(self, self.host, self._control_port)
            threading.Thread(
                target=self._control.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="faultproxy-control",
                daemon=True,
            ).start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close everything; blackholed and slow requests end now. Idempotent."""
        self._stopping.set()
        self._changed.set()
        if self._control is not None:
            self._control.shutdown()
            self._control.server_close()
            self._control = None
        with self._lock:
            self._close_listener_locked()
            self._reset_clients_locked()
            threads = list(self._threads)
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
            self._accept_thread = None
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # ---- addresses and state ------------------------------------------------------------

    @property
    def url(self) -> str:
        """The proxy's base URL: give it to the client instead of the target's."""
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str | None:
        if self._control is None:
            return None
        return f"http://{self.host}:{self._control.server_address[1]}"

    @property
    def fault(self) -> Fault:
        with self._lock:
            return self._fault

    def stats(self) -> dict[str, Any]:
        """Current mode and counters: connections accepted, requests read, requests forwarded,
        and requests per mode."""
        with self._lock:
            return {
                "mode": self._fault.mode,
                **self._counts,
                "by_mode": dict(self._by_mode),
                "open_connections": len(self._clients),
            }

    # ---- switching modes ----------------------------------------------------------------

    def set_mode(self, mode: str, **params: Any) -> Fault:
        """Switch to ``mode``; unspecified parameters take their defaults (see ``Fault``)."""
        fault = Fault(mode=mode, **params)
        with self._lock:
            previous = self._fault
            self._fault = fault
            if fault.mode == "refuse" and previous.mode != "refuse":
                self._close_listener_locked()
                self._reset_clients_locked()
            elif fault.mode != "refuse" and self._listener is None and self._accept_thread:
                self._open_listener_locked()
        self._changed.set()
        self._changed.clear()
        return fault

    def passthrough(self) -> Fault:
        return self.set_mode("pass")

    def delay(self, delay_ms: int) -> Fault:
        return self.set_mode("delay", delay_ms=delay_ms)

    def refuse(self) -> Fault:
        return self.set_mode("refuse")

    def blackhole(self, hold_s: float = 30.0) -> Fault:
        return self.set_mode("blackhole", hold_s=hold_s)

    def slow(self, slow_ms: int = 10_000) -> Fault:
        return self.set_mode("slow", slow_ms=slow_ms)

    def trickle(self, trickle_ms: int = 100) -> Fault:
        return self.set_mode("trickle", trickle_ms=trickle_ms)

    def status(
        self, status: int, headers: dict[str, str] | None = None, body: str | None = None
    ) -> Fault:
        return self.set_mode("status", status=status, headers=headers or {}, body=body)

    def malformed(self, kind: str = "garbage") -> Fault:
        return self.set_mode("malformed", malformed=kind)

    # ---- listener -------------------------------------------------------------------------

    def _open_listener(self) -> None:
        with self._lock:
            self._open_listener_locked()

    def _open_listener_locked(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.listen(64)
        sock.settimeout(_ACCEPT_POLL_S)
        self.port = int(sock.getsockname()[1])  # port 0: fixed from now on, reused on reopen
        self._listener = sock

    def _close_listener_locked(self) -> None:
        if self._listener is not None:
            # shutdown first: on Linux it stops listening at once, even while the accept
            # thread still polls the socket (close alone would leave it listening until then).
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def _reset_clients_locked(self) -> None:
        for client in list(self._clients):
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        self._clients.clear()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:  # refuse mode: nothing listens
                self._changed.wait(_ACCEPT_POLL_S)
                continue
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed under us by set_mode("refuse") or stop()
                continue
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(
                target=self._serve_connection, args=(conn,), name="faultproxy-conn", daemon=True
            )
            with self._lock:
                if self._stopping.is_set() or self._listener is None:
                    conn.close()
                    continue
                self._clients.add(conn)
                self._threads.add(thread)
                self._counts["connections"] += 1
            thread.start()

    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            _ProxyHandler(conn, ("127.0.0.1", 0), self)  # type: ignore[arg-type]
        except OSError:
            pass  # the client went away, or we reset it (refuse, stop)
        finally:
            with self._lock:
                self._clients.discard(conn)
                self._threads.discard(threading.current_thread())
            conn.close()

    # ---- used by the handler ----------------------------------------------------------

    def _begin_request(self) -> Fault:
        with self._lock:
            fault = self._fault
            self._counts["requests"] += 1
            self._by_mode[fault.mode] = self._by_mode.get(fault.mode, 0) + 1
            return fault

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False if the proxy is stopping."""
        return not self._stopping.wait(max(seconds, 0.0))

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream = http.client.HTTPConnection(
            self._target_host, self._target_port, timeout=_UPSTREAM_TIMEOUT_S
        )
        try:
            sent = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
            upstream.putrequest(method, self._target_prefix + path, skip_host=True)
            for key, value in sent:
                if key.lower() == "host":
                    value = f"{self._target_host}:{self._target_port}"
                upstream.putheader(key, value)
            if body or method in ("POST", "PUT", "PATCH"):
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body or None)
            response = upstream.getresponse()
            data = response.read()
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            with self._lock:
                self._counts["forwarded"] += 1
            return response.status, response.reason, kept, data
        finally:
            upstream.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    """Parses one client connection's requests and applies the fault of each."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the backends it stands for
    server: Any  # the FaultProxy (not a socketserver: we only reuse the request parsing)

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def handle_one_request(self) -> None:
        # Same as the base class but with every method routed to _apply.
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536 or not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._apply()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _apply(self) -> None:
        proxy: FaultProxy = self.server
        fault = proxy._begin_request()
        body = self._read_body()
        mode = fault.mode
        if mode == "refuse":  # accepted just before the switch: behave like a dead backend
            self.close_connection = True
            return
        if mode == "blackhole":
            end = time.monotonic() + fault.hold_s
            while time.monotonic() < end and proxy._wait(min(0.1, end - time.monotonic())):
                pass
            self.close_connection = True
            return
        if mode == "status":
            text = fault.body if fault.body is not None else f"fault proxy: status {fault.status}"
            self._answer(fault.status, None, list(fault.headers.items()), text.encode())
            return
        if mode == "malformed":
            self._malformed(fault.malformed)
            return
        if mode == "delay" and not proxy._wait(fault.delay_ms / 1000):
            self.close_connection = True
            return
        try:
            status, reason, headers, data = proxy._forward(
                self.command, self.path, list(self.headers.items()), body
            )
        except OSError as error:
            # The backend itself is down: answer like a gateway would.
            text = f"fault proxy: target unreachable: {type(error).__name__}: {error}"
            self._answer(502, None, [], text.encode())
            return
        if mode == "slow" and not proxy._wait(fault.slow_ms / 1000):
            self.close_connection = True
            return
        if mode == "trickle":
            self._trickle(status, reason, headers, data, fault.trickle_ms / 1000, fault.hold_s)
            return
        self._answer(status, reason, headers, data)

    def _answer(
        self, status: int, reason: str | None, headers: list[tuple[str, str]], data: bytes
    ) -> None:
        self.send_response_only(status, reason)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _trickle(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        data: bytes,
        every: float,
        hold_s: float,
    ) -> None:
        proxy: FaultProxy = self.server
        # The whole answer, status line and headers included: a backend whose answer has no
        # body (a Pushgateway PUT, an OTLP export) must trickle too.
        head = [f"{self.protocol_version} {status} {reason}"]
        head += [f"{key}: {value}" for key, value in headers]
        head.append(f"Content-Length: {len(data)}")
        answer = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data
        end = time.monotonic() + hold_s
        for i in range(len(answer)):
            if i and (time.monotonic() > end or not proxy._wait(every)):
                self.close_connection = True
                return
            self.wfile.write(answer[i : i + 1])
            self.wfile.flush()

    def _malformed(self, kind: str) -> None:
        self.close_connection = True
        if kind == "garbage":
            self.wfile.write(GARBAGE)
        elif kind == "truncated":
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n"
                b"\r\nonly a few bytes"
            )
        self.wfile.flush()


# ---- control API ----------------------------------------------------------------------------


def _control_server(proxy: FaultProxy, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _json(self, status: int, value: Any) -> None:
            data = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/fault":
                self._json(404, {"error": "use /fault"})
                return
            self._json(200, {**proxy.fault.as_dict(), "stats": proxy.stats()})

        def do_PUT(self) -> None:
            if self.path.rstrip("/") != "/fault":
                self._json(404, {"error": "use /fault"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                params = json.loads(self.rfile.read(length) or b"{}")
                if not isinstance(params, dict):
                    raise FaultProxyError("expected a JSON object")
                mode = str(params.pop("mode", "pass"))
                fault = proxy.set_mode(mode, **params)
            except (ValueError, TypeError, FaultProxyError) as error:
                self._json(400, {"error": str(error)})
                return
            self._json(200, fault.as_dict())

        do_POST = do_PUT  # noqa: N815 (http.server's name)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


# ---- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stack.faultproxy", description="HTTP fault proxy on loopback"
    )
    parser.add_argument("--target", required=True, help="backend base URL (loopback, http://)")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--control-port", type=int, help="control API port (0: a free one)")
    parser.add_argument("--mode", choices=MODES, default=None)
    parser.add_argument("--delay-ms", type=int, default=0, help="with no --mode: delay mode")
    parser.add_argument("--slow-ms", type=int, default=10_000)
    parser.add_argument("--trickle-ms", type=int, default=100)
    parser.add_argument("--status", type=int, default=500)
    parser.add_argument("--malformed", choices=MALFORMED_KINDS, default="garbage")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    mode = args.mode or ("delay" if args.delay_ms else "pass")
    try:
        proxy = FaultProxy(
            args.target,
            host=args.listen_host,
            port=args.listen_port,
            mode=mode,
            control_port=args.control_port,
            delay_ms=args.delay_ms,
            slow_ms=args.slow_ms,
            trickle_ms=args.trickle_ms,
            status=args.status,
            malformed=args.malformed,
        )
    except FaultProxyError as error:
        print(f"faultproxy: {error}", file=sys.stderr)
        return 2
    stop = stop_event()
    with proxy:
        print(f"faultproxy: listening on {proxy.url} -> {proxy.target} ({mode})", file=sys.stderr)
        if proxy.control_url:
            print(f"faultproxy: control on {proxy.control_url}/fault", file=sys.stderr)
        sys.stderr.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
