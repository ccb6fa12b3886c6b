"""The Docker users' local stack (deploy/): validated with the tools that run here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.conftest import DEPLOY, ROOT, load_template

COMPOSE = DEPLOY / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "healthz.json"
SERVICES = {"pushgateway", "pushgateway-2", "prometheus", "otel-collector", "jaeger", "grafana"}
NETWORK = "healthz-observability"
# What the function pushes (layer + app), per execution environment with labels job, instance.
METRICS = {
    "healthz_calls_total",
    "http_server_request_duration_seconds_bucket",
    "http_server_request_duration_seconds_count",
    "http_server_request_duration_seconds_sum",
    "lambda_cold_starts_total",
    "telemetry_export_failures_total",
    "otel_spans_dropped_total",
    "push_time_seconds",
    "push_failure_time_seconds",
    # The platform's figures (Telemetry API), pushed where the layer subscribed.
    "aws_lambda_billed_duration_seconds_sum",
    "aws_lambda_billed_duration_seconds_count",
    "faas_invoke_duration_seconds_bucket",
    "faas_mem_usage_bytes_bucket",
}
LABELS = {"job", "instance", "method", "route", "status_code", "backend", "le"}


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: apt-get install -y prometheus (ships promtool)")
    return found


def test_compose_services_images_ports() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), (
            f"{name}: {image} is not pinned to a version tag"
        )
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (
                f"{name}: {port} is published beyond loopback"
            )
        assert service["networks"] == ["observability"]
        for dep in service.get("depends_on", []):
            assert dep in services
    assert doc["networks"]["observability"]["name"] == NETWORK
    published = [p.split(":")[1] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published))
    assert "3000" not in published  # sam local start-api's port


def _mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    mounts = {}
    for volume in compose()["services"][service].get("volumes", []):
        host, container, *_ = volume.split(":")
        path = (DEPLOY / host).resolve()
        assert path.exists(), f"{service}: {host} does not exist"
        mounts[container] = path
    return mounts


def _container_tree(service: str, root: Path) -> None:
    """Lay out a service's mounts under root as the container sees them."""
    for container, host in _mounts(service).items():
        target = root / container.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if host.is_dir():
            shutil.copytree(host, target)
        else:
            shutil.copy(host, target)


def test_prometheus_config_as_mounted_in_compose(tmp_path: Path) -> None:
    _container_tree("prometheus", tmp_path)
    config = tmp_path / "etc" / "prometheus" / "prometheus.yml"
    command = compose()["services"]["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    result = subprocess.run(
        [promtool(), "check", "config", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # check config also checked both rule files, found through the mounts.
    assert "alerts.yml" in result.stdout and "recording_rules.yml" in result.stdout
    assert "SUCCESS" in result.stdout
    scrape = yaml.safe_load(config.read_text())["scrape_configs"]
    (job,) = scrape
    assert job["honor_labels"] is True
    # Every gateway the function shards over, in one job (honor_labels keeps their groups').
    assert job["static_configs"] == [{"targets": ["pushgateway:9091", "pushgateway-2:9091"]}]
    # The mounted rules are the project's, unchanged.
    assert _mounts("prometheus")["/etc/prometheus/alerts.yml"] == ROOT / "stack" / "alerts.yml"


def test_rules_pass_promtool() -> None:
    rules = [ROOT / "stack" / "alerts.yml", ROOT / "stack" / "recording_rules.yml"]
    result = subprocess.run(
        [promtool(), "check", "rules", *map(str, rules)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_otel_collector_pipeline_reaches_jaeger() -> None:
    mounts = _mounts("otel-collector")
    config = yaml.safe_load(mounts["/etc/otelcol-contrib/config.yaml"].read_text())
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        for name in pipeline[kind]:
            assert name in config[kind], f"{kind} {name} is used but not defined"
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"][
        "endpoint"
    ].endswith(":4318")
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert compose()["services"]["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_grafana_provisioning() -> None:
    mounts = _mounts("grafana")
    provisioning = mounts["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources" / "datasources.yml").read_text())[
        "datasources"
    ]
    by_uid = {s["uid"]: s for s in sources}
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["jaeger"]["url"] == "http://jaeger:16686"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "dashboards.yml").read_text())[
        "providers"
    ]
    assert provider["options"]["path"] in {c for c in mounts}
    assert (mounts[provider["options"]["path"]] / DASHBOARD.name).is_file()


def _dashboard() -> dict[str, Any]:
    doc = json.loads(DASHBOARD.read_text())
    assert isinstance(doc, dict)
    return doc


def _exprs() -> list[str]:
    return [t["expr"] for p in _dashboard()["panels"] for t in p["targets"]]


def test_dashboard_structure() -> None:
    doc = _dashboard()
    assert isinstance(doc["uid"], str) and doc["uid"] and isinstance(doc["title"], str)
    assert isinstance(doc["schemaVersion"], int)
    panels = doc["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat", "table", "gauge", "bargauge"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert panel["title"]
        grid = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(grid)
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert isinstance(target["expr"], str) and target["expr"].strip()
            assert target["datasource"] == panel["datasource"]
    (variable,) = doc["templating"]["list"]
    assert variable["name"] == "job" and variable["datasource"]["uid"] == "prometheus"
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("calls per second", "latency", "cold starts", "push freshness"):
        assert topic in titles


def _concrete(expr: str) -> str:
    # Grafana's variables, as Grafana substitutes them before the query reaches Prometheus.
    return expr.replace("$__rate_interval", "1m").replace("$job", "healthz")


def test_dashboard_queries_parse_with_promtool(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": _concrete(e)}
                    for i, e in enumerate(_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_exprs())} rules found" in result.stdout


def test_promtool_rejects_a_broken_query(tmp_path: Path) -> None:
    """Guards the check above: promtool really parses the expressions."""
    path = tmp_path / "broken.yml"
    path.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(x[5m])"}]}]}
        )
    )
    assert (
        subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True).returncode
        != 0
    )


def test_dashboard_queries_use_only_pushed_metrics_and_labels() -> None:
    used_metrics: set[str] = set()
    for expr in _exprs():
        selectors = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", expr)
        assert selectors, expr
        for name, matchers in selectors:
            assert name in METRICS, f"unknown metric {name} in {expr}"
            used_metrics.add(name)
            for label in re.findall(r"([a-zA-Z_]+)\s*=~?", matchers):
                assert label in LABELS, f"unknown label {label} in {expr}"
        for group in re.findall(r"by \(([^)]*)\)", expr):
            assert {g.strip() for g in group.split(",")} <= LABELS, expr
        # Every metric name in the query carries a selector (so none hides from the check).
        bare = {m for m in re.findall(r"[a-z_]+_(?:total|seconds|bucket|count|sum)\b", expr)}
        assert bare <= METRICS, expr
    assert used_metrics == METRICS


def test_the_layer_defines_the_metrics_the_dashboard_reads() -> None:
    import app  # noqa: F401  (registers healthz_calls_total in the layer's registry)
    import lambda_observability.metrics as m
    from lambda_observability.telemetry_api import PlatformFigures

    PlatformFigures()  # as a Telemetry API subscription makes its histograms

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    names = {
        family.name + suffix
        for family in m.REGISTRY.collect()
        for suffix in suffixes.get(family.type, [""])
    }
    # push_time_seconds and push_failure_time_seconds are added by the Pushgateway per group.
    assert METRICS - {"push_time_seconds", "push_failure_time_seconds"} <= names


def test_env_docker_json_points_the_function_at_the_compose_services() -> None:
    overrides = json.loads((DEPLOY / "env.docker.json").read_text())
    (function,) = overrides
    declared = load_template()["Resources"][function]["Properties"]["Environment"]["Variables"]
    # `sam local --env-vars` only overrides variables the template declares.
    assert set(overrides[function]) <= set(declared)
    services = compose()["services"]
    urls = overrides[function]["PUSHGATEWAY_URL"].split(",")
    assert len(urls) == 2  # sharded over both gateways
    for url in [*urls, overrides[function]["OTEL_EXPORTER_OTLP_ENDPOINT"]]:
        match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", url)
        assert match, url
        host, port = match.groups()
        assert host in services
        exposed = {p.rsplit(":", 1)[-1] for p in services[host].get("ports", [])}
        assert port in exposed
    assert overrides[function]["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert overrides[function]["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4318")
