"""The stack's processes: Pushgateway, Prometheus, the OpenTelemetry Collector, the fault proxy.

Each is a context manager usable alone (e.g. a Pushgateway-only pytest fixture) and
listens on 127.0.0.1 only. Port 0 means "pick a free port".
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from stack._proc import ManagedProcess, Service, StackError, find_binary, http_ok
from stack.gotools import OTELCOL, PUSHGATEWAY
from stack.net import HOST, free_port
from stack.otlp_json import parse_line, span_records

CONFIG_DIR = Path(__file__).resolve().parent
PROMETHEUS_YML = CONFIG_DIR / "prometheus.yml"
RULE_FILES = ("alerts.yml", "recording_rules.yml")
ALERTS_TEST_YML = CONFIG_DIR / "alerts_test.yml"
_TEMPLATE_TARGET = '"127.0.0.1:9091"'  # the Pushgateway target written in prometheus.yml
_TEMPLATE_SCRAPE = ("scrape_interval: 1s", "scrape_timeout: 1s")  # global, in prometheus.yml
_BIND_ATTEMPTS = 3  # a free port can be taken between choosing and binding it


def _get_json(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> Any:
    req = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (loopback URL)
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback URL)
        return json.load(resp)


class _Component(Service):
    """Start/stop bookkeeping shared by the components."""

    name = "component"

    def __init__(self, workdir: Path, startup_timeout: float) -> None:
        self.workdir = workdir
        self.startup_timeout = startup_timeout
        self.process: ManagedProcess | None = None

    def _start_once(self, port: int) -> ManagedProcess:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _start_on(self, port: int) -> int:
        """Start on `port`, or on a fresh free port per attempt when `port` is 0."""
        chosen: list[int] = []

        def launch() -> ManagedProcess:
            chosen[:] = [port or free_port()]
            return self._start_once(chosen[0])

        self._launch_until_ready(launch, _BIND_ATTEMPTS if port == 0 else 1)
        return chosen[0]

    def _launch_until_ready(self, launch: Callable[[], ManagedProcess], attempts: int) -> None:
        """``launch`` until the process is ready; a new try only if a port was taken (a free
        port found earlier can be taken by someone else before the process binds it)."""
        last: StackError | None = None
        for _ in range(attempts):
            self.process = launch()
            try:
                self.process.wait_until(self._ready, self.startup_timeout, "ready")
                return
            except StackError as exc:
                self.process.stop()
                self.process = None
                last = exc
                if "address already in use" not in str(exc):
                    break
        assert last is not None
        raise last

    def _spawn_python(self, argv: list[str], log: Path, what: str) -> None:
        """Start one of this package's modules and wait until `_ready`; stopped if it is not."""
        env = dict(os.environ)
        # the child must import this very `stack` package, whatever its cwd
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(CONFIG_DIR.parent), env.get("PYTHONPATH", "")) if p
        )
        self.process = ManagedProcess(self.name, argv, log, env=env)
        try:
            self.process.wait_until(self._ready, self.startup_timeout, what)
        except StackError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


# ---------------------------------------------------------------------------


class Pushgateway(_Component):
    """The Pushgateway built from tools/pushgateway (`make go-tools`; `$PUSHGATEWAY_BIN` for
    another, e.g. Debian's), in memory only unless given a `persistence_file`, admin API on
    (tests wipe it). `consistency_check=False` passes `--push.disable-consistency-check`."""

    name = "pushgateway"

    def __init__(
        self,
        workdir: Path,
        port: int = 0,
        startup_timeout: float = 15.0,
        web_config_file: Path | None = None,
        basic_auth: tuple[str, str] | None = None,
        persistence_file: Path | None = None,
        consistency_check: bool = True,
    ) -> None:
        super().__init__(workdir, startup_timeout)
        self.persistence_file = persistence_file
        self.consistency_check = consistency_check
        self.binary = PUSHGATEWAY.binary()
        self.port = port
        self.web_config_file = web_config_file
        # only for the stack's own requests (readiness, listing) when the gateway needs auth
        self._headers: dict[str, str] = {}
        if basic_auth is not None:
            token = base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _start_once(self, port: int) -> ManagedProcess:
        self.port = port
        argv = [
            self.binary,
            f"--web.listen-address={HOST}:{port}",
            "--web.enable-admin-api",
            # Debian's build (as $PUSHGATEWAY_BIN) defaults to /var/lib/prometheus/
            # pushgateway.data, which would share groups between runs: in memory only, or in
            # a file of the caller's.
            f"--persistence.file={self.persistence_file or ''}",
        ]
        if not self.consistency_check:
            argv.append("--push.disable-consistency-check")
        if self.web_config_file is not None:
            argv.append(f"--web.config.file={self.web_config_file}")
        return ManagedProcess(self.name, argv, self.workdir / "pushgateway.log")

    def _ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready", headers=self._headers)

    def start(self) -> Self:
        self.port = self._start_on(self.port)
        return self

    def groups(self) -> list[dict[str, Any]]:
        """The gateway's groups as `GET /api/v1/metrics` lists them."""
        data = _get_json(f"{self.url}/api/v1/metrics", headers=self._headers)
        return list(data["data"])

    def job_total(self, job: str, metric: str = "healthz_calls_total") -> tuple[float, int]:
        """``metric`` summed over every group of ``job``, and the number of those groups."""
        groups = [g for g in self.groups() if g["labels"].get("job") == job]
        total = sum(
            float(sample["value"]) for g in groups if metric in g for sample in g[metric]["metrics"]
        )
        return total, len(groups)

    def wipe(self) -> None:
        """Delete every group (admin API): test isolation."""
        url = f"{self.url}/api/v1/admin/wipe"
        req = urllib.request.Request(url, method="PUT", headers=self._headers)  # noqa: S310
        with urllib.request.urlopen(req, timeout=5):  # noqa: S310 (loopback URL)
            pass


# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector."""

    labels: dict[str, str]
    value: float


def _ports(pushgateway_port: int | Sequence[int]) -> list[int]:
    return [pushgateway_port] if isinstance(pushgateway_port, int) else list(pushgateway_port)


def render_prometheus_config(
    dest_dir: Path, pushgateway_port: int | Sequence[int], scrape_interval: str | None = None
) -> Path:
    """Write prometheus.yml and its rule files into dest_dir, scraping the Pushgateway on
    `pushgateway_port`, or every one of several (sharded) on the ports given.

    `scrape_interval` (e.g. "5s", also the timeout) replaces the file's 1 s, which a
    Pushgateway holding thousands of groups cannot be scraped within."""
    text = PROMETHEUS_YML.read_text()
    for expected in (_TEMPLATE_TARGET, *_TEMPLATE_SCRAPE):
        if expected not in text:
            raise StackError(f"{PROMETHEUS_YML} no longer has {expected}")
    if scrape_interval is not None:
        for line in _TEMPLATE_SCRAPE:
            text = text.replace(line, f"{line.split(':')[0]}: {scrape_interval}")
    targets = ", ".join(f'"{HOST}:{port}"' for port in _ports(pushgateway_port))
    dest_dir.mkdir(parents=True, exist_ok=True)
    config = dest_dir / "prometheus.yml"
    config.write_text(text.replace(_TEMPLATE_TARGET, targets))
    for name in RULE_FILES:  # rule_files are relative to the config file
        shutil.copyfile(CONFIG_DIR / name, dest_dir / name)
    return config


class Prometheus(_Component):
    """Prometheus with the repo's scrape config and rules, a throwaway TSDB."""

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        pushgateway_port: int | Sequence[int],
        port: int = 0,
        startup_timeout: float = 30.0,
        scrape_interval: str | None = None,
    ) -> None:
        super().__init__(workdir, startup_timeout)
        self.binary = find_binary(["prometheus"], "PROMETHEUS_BIN", "prometheus")
        self.port = port
        self.pushgateway_port = pushgateway_port
        self.scrape_interval = scrape_interval

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _start_once(self, port: int) -> ManagedProcess:
        self.port = port
        config = render_prometheus_config(
            self.workdir / "prometheus", self.pushgateway_port, self.scrape_interval
        )
        argv = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'prometheus' / 'data'}",
            f"--web.listen-address={HOST}:{port}",
            f"--web.external-url=http://{HOST}:{port}/",
        ]
        return ManagedProcess(self.name, argv, self.workdir / "prometheus.log")

    def _ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    def start(self) -> Self:
        self.port = self._start_on(self.port)
        return self

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raises StackError on an API error."""
        query = urllib.parse.urlencode(params)
        body = _get_json(f"{self.url}/api/v1/{path}?{query}")
        if body.get("status") != "success":
            raise StackError(f"Prometheus {path} failed: {body.get('error', body)}")
        return body["data"]

    def query(self, promql: str) -> float | list[Sample]:
        """Instant query: a float for scalar results, else the vector's samples."""
        data = self.api("query", query=promql)
        kind = data["resultType"]
        if kind == "scalar":
            return float(data["result"][1])
        if kind == "vector":
            return [Sample(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]
        raise StackError(f"query returned a {kind}; use api('query', ...) for it")

    def query_value(self, promql: str) -> float | None:
        """The single value of a query (None if the vector is empty)."""
        result = self.query(promql)
        if isinstance(result, float):
            return result
        if not result:
            return None
        if len(result) > 1:
            raise StackError(f"{promql!r} returned {len(result)} samples, expected one")
        return result[0].value

    def wait_for_scrape(self, after: float | None = None, timeout: float = 20.0) -> float:
        """Wait until a Pushgateway scrape that started after `after` (default: now) is stored,
        of every Pushgateway target when there are several.

        Pushes made before calling this are then visible to queries. Returns the scrape's
        timestamp (the oldest of them).
        """
        since = time.time() if after is None else after
        # Prometheus may shift scrape timestamps by a few ms to align them (timestamp
        # tolerance), so demand a little more than `since`.
        threshold = since + 0.01
        deadline = time.monotonic() + timeout
        while True:
            stamps = self.query('timestamp(up{job="pushgateway"})')
            if isinstance(stamps, list) and len(stamps) == len(_ports(self.pushgateway_port)):
                ts = min(sample.value for sample in stamps)
                if ts > threshold:
                    return ts
            if time.monotonic() > deadline:
                raise StackError(f"no Pushgateway scrape after {since:.3f} within {timeout}s")
            time.sleep(0.1)

    def alerts(self) -> list[dict[str, Any]]:
        """Active (pending or firing) alerts."""
        return list(self.api("alerts")["alerts"])


# ---------------------------------------------------------------------------


def _ready_line(log: Path, pattern: re.Pattern[str]) -> re.Match[str] | None:
    """The first match of `pattern` in the log written so far."""
    try:
        return pattern.search(log.read_text(errors="replace"))
    except OSError:
        return None


class FaultProxyProcess(_Component):
    """`python -m stack.faultproxy` in front of `target`, in a child process (off the tested
    process's GIL), switched over its control API: the one way to make a backend slow or
    failing."""

    _LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+)) ")
    _CONTROL = re.compile(r"control on (http://127\.0\.0\.1:\d+/fault)")

    def __init__(
        self,
        target: str,
        workdir: Path,
        name: str = "faultproxy",
        port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        super().__init__(workdir, startup_timeout)
        self.name = name
        self.target = target
        self.port = port
        self.control_url = ""
        self._log = workdir / f"{name}.log"

    @property
    def url(self) -> str:
        """Give this to the client instead of the target's URL."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> Self:
        # The proxy binds port 0 itself and reports the real ports: no race to retry.
        argv = [sys.executable, "-m", "stack.faultproxy", "--target", self.target]
        argv += ["--listen-port", str(self.port), "--control-port", "0"]
        self._spawn_python(argv, self._log, "listening")
        return self

    def _ready(self) -> bool:
        listening = _ready_line(self._log, self._LISTENING)
        control = _ready_line(self._log, self._CONTROL)
        if listening is None or control is None:
            return False
        self.port = int(listening.group(2))
        self.control_url = control.group(1)
        return True

    def set_mode(self, mode: str, **params: Any) -> dict[str, Any]:
        """Switch to a `FaultProxy` mode (`delay`, `status`, `refuse`, `trickle`, ...)."""
        body = json.dumps({"mode": mode, **params}).encode()
        headers = {"Content-Type": "application/json"}
        req = urllib.request.Request(self.control_url, body, headers, method="PUT")  # noqa: S310
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (loopback URL)
            return dict(json.load(resp))

    def set_delay(self, delay_ms: int) -> None:
        """Forward every request `delay_ms` late (0: pass straight through)."""
        if delay_ms:
            self.set_mode("delay", delay_ms=delay_ms)
        else:
            self.set_mode("pass")

    def stats(self) -> dict[str, Any]:
        """The current mode and its parameters, and the proxy's counters under `stats`."""
        return dict(_get_json(self.control_url))


class OtelCollector(_Component):
    """The project's OpenTelemetry Collector (built from tools/otelcol by `make go-tools`),
    receiving OTLP on loopback ports; the spans it received are read back from its file
    exporter.

    By default two otlp receivers, one per transport (gRPC on `grpc_port`, HTTP on
    `http_port`), each with a pipeline of its own to a file exporter (OTLP/JSON lines, flushed
    every 20 ms), so that every span read back says which transport it came by. With
    `config=` another Collector config runs instead (`deploy/otel-collector/config.yaml`), with
    as little changed as running it here needs (see `_overlay`).

    It has no fault controls: a slow or failing OTLP/HTTP backend is a `FaultProxyProcess` in
    front of `http_endpoint` (as `Stack(delay_ms=...)` puts one)."""

    name = "otelcol"
    FLUSH_INTERVAL = 0.02  # the file exporter's flush_interval, in seconds
    READY = "Everything is ready. Begin running and processing data."

    def __init__(
        self,
        workdir: Path,
        grpc_port: int = 0,
        http_port: int = 0,
        startup_timeout: float = 30.0,
        config: Path | None = None,
    ) -> None:
        super().__init__(workdir, startup_timeout)
        self.binary = OTELCOL.binary()
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.config = config
        self.dir = workdir / "otelcol"
        self._log = self.dir / "otelcol.log"
        # transport (None: one receiver took both) -> the file exporter's output
        self.span_files: dict[str | None, Path] = (
            {"grpc": self.dir / "spans-grpc.jsonl", "http": self.dir / "spans-http.jsonl"}
            if config is None
            else {None: self.dir / "spans.jsonl"}
        )
        self._read: dict[str | None, int] = dict.fromkeys(self.span_files, 0)
        self._records: list[dict[str, Any]] = []

    @property
    def http_endpoint(self) -> str:
        """Base URL for OTEL_EXPORTER_OTLP_ENDPOINT with http/protobuf (the exporter appends
        /v1/traces)."""
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{HOST}:{self.grpc_port}"

    def _file_exporter(self, path: Path) -> dict[str, Any]:
        interval = f"{int(self.FLUSH_INTERVAL * 1000)}ms"
        return {"path": str(path), "format": "json", "flush_interval": interval}

    def _own_config(self, grpc_port: int, http_port: int) -> dict[str, Any]:
        def receiver(protocol: str, port: int) -> dict[str, Any]:
            return {"protocols": {protocol: {"endpoint": f"{HOST}:{port}"}}}

        ports = {"grpc": grpc_port, "http": http_port}
        return {
            "receivers": {f"otlp/{t}": receiver(t, ports[t]) for t in ("grpc", "http")},
            "exporters": {
                f"file/{t}": self._file_exporter(self.span_files[t]) for t in ("grpc", "http")
            },
            "service": {
                # no listener of its own (the default serves metrics on :8888)
                "telemetry": {"metrics": {"level": "none"}},
                "pipelines": {
                    f"traces/{t}": {"receivers": [f"otlp/{t}"], "exporters": [f"file/{t}"]}
                    for t in ("grpc", "http")
                },
            },
        }

    def _overlay(self, grpc_port: int, http_port: int) -> dict[str, Any]:
        """Merged over `config` (the Collector merges its --config files in order; a list is
        replaced): the otlp receiver on loopback ports, the traces pipeline's exporters a file
        exporter (where Jaeger was, which cannot run here) and debug, internal metrics off."""
        return {
            "receivers": {
                "otlp": {
                    "protocols": {
                        "grpc": {"endpoint": f"{HOST}:{grpc_port}"},
                        "http": {"endpoint": f"{HOST}:{http_port}"},
                    }
                }
            },
            "exporters": {"file": self._file_exporter(self.span_files[None])},
            "service": {
                "telemetry": {"metrics": {"level": "none"}},
                "pipelines": {"traces": {"exporters": ["file", "debug"]}},
            },
        }

    def _launch(self, grpc_port: int, http_port: int) -> ManagedProcess:
        self.dir.mkdir(parents=True, exist_ok=True)
        generated = self.dir / "config.json"  # JSON is YAML: the Collector reads it as such
        if self.config is None:
            generated.write_text(json.dumps(self._own_config(grpc_port, http_port), indent=2))
            configs = [generated]
        else:
            generated.write_text(json.dumps(self._overlay(grpc_port, http_port), indent=2))
            configs = [self.config, generated]
        self.grpc_port, self.http_port = grpc_port, http_port
        for path in self.span_files.values():
            path.touch()
        argv = [self.binary, *(f"--config={c}" for c in configs)]
        self._log.write_bytes(b"")  # the ready line of this attempt, not of an earlier one
        return ManagedProcess(self.name, argv, self._log)

    def _ready(self) -> bool:
        try:
            return self.READY in self._log.read_text(errors="replace")
        except OSError:
            return False

    def start(self) -> Self:
        wanted = (self.grpc_port, self.http_port)
        self._launch_until_ready(
            lambda: self._launch(wanted[0] or free_port(), wanted[1] or free_port()),
            _BIND_ATTEMPTS if wanted == (0, 0) else 1,
        )
        return self

    def validate(self) -> subprocess.CompletedProcess[str]:
        """`otelcol-healthz validate` of the config this component would run."""
        self.dir.mkdir(parents=True, exist_ok=True)
        generated = self.dir / "validate.json"
        if self.config is None:
            generated.write_text(json.dumps(self._own_config(4317, 4318)))
            configs = [generated]
        else:
            generated.write_text(json.dumps(self._overlay(4317, 4318)))
            configs = [self.config, generated]
        argv = [self.binary, "validate", *(f"--config={c}" for c in configs)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

    def _read_new(self) -> None:
        for transport, path in self.span_files.items():
            try:
                with path.open("rb") as f:
                    f.seek(self._read[transport])
                    data = f.read()
            except FileNotFoundError:
                continue
            complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits
            self._read[transport] += len(complete)
            for line in complete.splitlines():
                if line.strip():
                    self._records.extend(span_records(parse_line(line), transport))

    def spans(self, **filters: str) -> list[dict[str, Any]]:
        """Spans received so far, as far as the file exporter has flushed them (filters:
        trace_id, name, span_id, parent_span_id). In the order of arrival for each transport."""
        self._read_new()
        spans = self._records
        for key in ("trace_id", "name", "span_id", "parent_span_id"):
            if key in filters:
                spans = [s for s in spans if s[key] == filters[key]]
        return list(spans)

    def clear_spans(self) -> int:
        """Forget the spans received so far (the files keep them); returns how many. Spans
        still in flight in the Collector are given a few flush intervals to be written first."""
        time.sleep(3 * self.FLUSH_INTERVAL)
        self._read_new()
        deleted = len(self._records)
        self._records = []
        return deleted


# The component's name before the real Collector replaced the hand-written receiver; bench/
# (run.py, policy.py, inenv.py) still call it so.
OtlpReceiverProcess = OtelCollector
