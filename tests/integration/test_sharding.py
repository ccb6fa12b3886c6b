"""PUSHGATEWAY_URL with two real Pushgateways: each environment's group lives on exactly one,
and Prometheus, scraping both with honor_labels, counts every call once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lambda_observability.export.pushgateway import gateway_for
from stack.components import Prometheus, Pushgateway
from tests.integration.direct import run_environment

pytestmark = pytest.mark.integration

ENVIRONMENTS = 4
# Four random instance ids all hash to one of two gateways one time in eight: then a few more
# environments are started, so that the test always sees both gateways holding groups.
MAX_ENVIRONMENTS = 12


@pytest.fixture
def prometheus(
    pushgateways: tuple[Pushgateway, Pushgateway], tmp_path: Path
) -> Iterator[Prometheus]:
    ports = [gateway.port for gateway in pushgateways]
    with Prometheus(tmp_path, pushgateway_port=ports) as server:
        yield server


def _calls_by_instance(gateway: Pushgateway) -> dict[str, float]:
    return {
        group["labels"]["instance"]: float(group["healthz_calls_total"]["metrics"][0]["value"])
        for group in gateway.groups()
        if group["labels"].get("job") == "healthz"
    }


def test_each_group_lives_on_one_gateway_and_the_sum_is_exact(
    pushgateways: tuple[Pushgateway, Pushgateway], prometheus: Prometheus
) -> None:
    urls = tuple(gateway.url for gateway in pushgateways)
    env = {"PUSHGATEWAY_URL": ",".join(urls)}
    made = 0
    for n in range(1, MAX_ENVIRONMENTS + 1):
        run = run_environment(env, ["rest-get.json"] * n)  # a fresh interpreter: a cold start
        assert [r["statusCode"] for r in run.responses] == [200] * n
        made += n
        if n >= ENVIRONMENTS and all(_calls_by_instance(g) for g in pushgateways):
            break
    held = [_calls_by_instance(gateway) for gateway in pushgateways]

    assert all(held), "both gateways hold groups"
    first, second = held
    assert not set(first) & set(second)  # never split
    assert len(first) + len(second) == n >= ENVIRONMENTS
    for url, groups in zip(urls, held, strict=True):
        assert all(gateway_for(urls, instance) == url for instance in groups)
    assert sum(first.values()) + sum(second.values()) == made

    prometheus.wait_for_scrape()  # of both targets
    assert prometheus.query_value('sum(healthz_calls_total{job="healthz"})') == made
    assert prometheus.query_value('count(healthz_calls_total{job="healthz"})') == n
    assert prometheus.query_value('count(up{job="pushgateway"} == 1)') == 2
