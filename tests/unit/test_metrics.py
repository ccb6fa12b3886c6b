"""The layer's metrics API: a function's own counters and histograms join the pushed registry."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest

from lambda_observability import metrics


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


def test_instance_id_is_stable_per_environment() -> None:
    assert len(metrics.INSTANCE_ID) == 32
    assert int(metrics.INSTANCE_ID, 16) >= 0


def test_total_reads_one_counter() -> None:
    visits = metrics.counter("visits_total", "Visits.")
    visits.inc(3)
    assert metrics.total(visits) == 3 == metrics.value("visits_total")
