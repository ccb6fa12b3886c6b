"""The layer's metrics API: a function's own counters and histograms join the pushed registry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter

from prometheus_client.exposition import generate_latest

from lambda_observability import metrics
from lambda_observability.config import Settings, gateways
from lambda_observability.export import pushgateway as pushing
from stack.components import Pushgateway
from tests.conftest import ROOT


def test_function_metrics_are_in_the_pushed_registry() -> None:
    orders = metrics.counter("orders_total", "Orders received.", ["channel"])
    size = metrics.histogram("order_size_items", "Items per order.", buckets=(1, 5, 10))
    orders.labels(channel="web").inc(2)
    size.observe(3)

    assert metrics.value("orders_total", {"channel": "web"}) == 2
    assert metrics.value("order_size_items_bucket", {"le": "5.0"}) == 1
    exposed = generate_latest(metrics.REGISTRY).decode()
    assert 'orders_total{channel="web"} 2.0' in exposed
    assert "order_size_items_count 1.0" in exposed
    # The layer's own metrics are there too, for every function.
    for name in ("lambda_cold_starts_total", "http_server_request_duration_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in exposed


def _instances(pushgateway: Pushgateway, job: str) -> list[str]:
    return sorted(
        g["labels"]["instance"] for g in pushgateway.groups() if g["labels"].get("job") == job
    )


def test_every_push_of_an_environment_has_the_same_instance(pushgateway: Pushgateway) -> None:
    pushes = metrics.counter("instance_test_pushes_total", "Pushes made by this test.")
    for n in range(1, 4):
        pushes.inc()
        pushing.push(pushgateway.url, "instance-test", time.monotonic() + 5)
        # Still one group, this environment's: each push replaced it instead of adding one.
        assert _instances(pushgateway, "instance-test") == [metrics.INSTANCE_ID]
        (group,) = [g for g in pushgateway.groups() if g["labels"]["job"] == "instance-test"]
        assert float(group["instance_test_pushes_total"]["metrics"][0]["value"]) == n
    assert re.fullmatch(r"[0-9a-f]{32}", metrics.INSTANCE_ID)


_COLD_START = """
import sys, time
from lambda_observability import metrics
from lambda_observability.export import pushgateway as pushing
for _ in range(2):
    pushing.push(sys.argv[1], "instance-test", time.monotonic() + 5)
print(metrics.INSTANCE_ID)
"""


def test_a_cold_start_gets_a_new_instance(pushgateway: Pushgateway) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers/observability/python")}

    def cold_start() -> str:
        done = subprocess.run(
            [sys.executable, "-c", _COLD_START, pushgateway.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout.strip()

    first, second = cold_start(), cold_start()
    assert len({first, second, metrics.INSTANCE_ID}) == 3
    # Two pushes each, one group each: the id held for the whole of each environment.
    assert _instances(pushgateway, "instance-test") == sorted([first, second])


def test_total_reads_one_counter() -> None:
    visits = metrics.counter("visits_total", "Visits.")
    visits.inc(3)
    assert metrics.total(visits) == 3 == metrics.value("visits_total")


# --- several Pushgateways: PUSHGATEWAY_URL as a list, one gateway per environment


def test_pushgateway_url_takes_a_comma_separated_list() -> None:
    env = {"PUSHGATEWAY_URL": " http://a:9091 ,, http://b:9091,http://a:9091 "}
    urls = tuple(g.url for g in gateways(env["PUSHGATEWAY_URL"]))
    assert urls == ("http://a:9091", "http://b:9091")
    assert Settings.from_env(env).pushgateways == gateways(env["PUSHGATEWAY_URL"])
    assert Settings.from_env({"PUSHGATEWAY_URL": " , "}).pushgateways == ()  # no push


def test_each_instance_has_one_gateway_the_same_in_every_process() -> None:
    urls = ("http://a:9091", "http://b:9091", "http://c:9091")
    # Pinned: a salted or changed hash would move live environments' groups.
    assert pushing.gateway_for(urls, "0" * 32) == "http://c:9091"
    script = "import sys; from lambda_observability import metrics; "
    script += "from lambda_observability.export import pushgateway as pushing; "
    script += "print(pushing.gateway_for(sys.argv[1:], metrics.INSTANCE_ID), metrics.INSTANCE_ID)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers/observability/python")}
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", script, *urls],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        gateway, instance = done.stdout.split()
        assert pushing.gateway_for(urls, instance) == gateway
    spread = Counter(pushing.gateway_for(urls, uuid.uuid4().hex) for _ in range(3000))
    assert set(spread) == set(urls) and min(spread.values()) > 800  # about 1,000 each
    assert pushing.gateway_for(urls[:1], "any") == urls[0]
