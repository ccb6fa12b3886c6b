"""prometheus-client's metric modules load without its package ``__init__`` (metrics.py), and
code that uses the package itself sees no difference.

Each case runs in a fresh interpreter: the deferral happens only where the layer is imported
before prometheus_client, and this test process has long imported both.
"""

from __future__ import annotations

import json

import pytest

from bench import fresh
from tests.conftest import ROOT

_PRELUDE = """
import json, sys
import lambda_observability.metrics
lambda_observability.metrics.registry()  # the first export makes it
import prometheus_client as pc
"""


def run(body: str) -> dict[str, object]:
    out = fresh.run(_PRELUDE + body, ROOT / "functions/healthz")
    result: dict[str, object] = json.loads(out.splitlines()[-1])
    return result


def test_declaring_and_recording_imports_no_prometheus_client() -> None:
    body = (
        "from lambda_observability import metrics\n"
        "calls = metrics.counter('calls_total', 'Calls.')\n"
        "calls.inc(2)\n"
        "sizes = metrics.histogram('sizes', 'Sizes.', ['kind'], buckets=(1, 5))\n"
        "sizes.labels(kind='a').observe(3)\n"
        "before = sorted(m for m in sys.modules if m.startswith('prometheus_client'))\n"
        "total = metrics.total(calls)\n"
        "replayed = metrics.value('calls_total'), metrics.value('sizes_bucket', "
        "{'kind': 'a', 'le': '5.0'})\n"
        "print(json.dumps({'before': before, 'total': total, 'replayed': replayed}))"
    )
    out = fresh.run("import json, sys\n" + body, ROOT / "functions/healthz")
    result = json.loads(out.splitlines()[-1])
    assert result == {"before": [], "total": 2.0, "replayed": [2.0, 1.0]}


def test_the_layer_loads_neither_exposition_nor_the_package_init() -> None:
    result = run(
        'print(json.dumps({"exposition": "prometheus_client.exposition" in sys.modules,'
        ' "http.server": "http.server" in sys.modules, "deferred": "__getattr__" in vars(pc)}))'
    )
    assert result == {"exposition": False, "http.server": False, "deferred": True}


def test_the_package_is_whole_on_first_use() -> None:
    result = run(
        "from prometheus_client import Gauge, start_http_server, generate_latest\n"
        "import prometheus_client.metrics as m\n"
        'print(json.dumps({"same_class": Gauge is m.Gauge,'
        ' "exposition": pc.exposition.__name__, "deferred": "__getattr__" in vars(pc),'
        ' "all": sorted(pc.__all__) == sorted(n for n in pc.__all__ if hasattr(pc, n))}))'
    )
    assert result == {
        "same_class": True,
        "exposition": "prometheus_client.exposition",
        "deferred": False,
        "all": True,
    }


@pytest.mark.parametrize("name", ["twisted", "parser", "django", "not_a_name"])
def test_probing_a_missing_name_answers_as_the_package_does(name: str) -> None:
    # A name the package does not bind: False, and no submodule imported to find out.
    result = run(
        f'print(json.dumps({{"has": hasattr(pc, "{name}"),'
        f' "imported": "prometheus_client.{name}" in sys.modules}}))'
    )
    assert result == {"has": False, "imported": False}


def test_the_default_registry_has_the_standard_collectors() -> None:
    # What importing the package registers, for code that reads the default registry only.
    result = run(
        "from prometheus_client.registry import REGISTRY\n"
        "names = sorted({family.name for family in REGISTRY.collect()})\n"
        'print(json.dumps({"names": names}))'
    )
    names = result["names"]
    assert isinstance(names, list)
    assert {"process_cpu_seconds", "python_gc_objects_collected", "python_info"} <= set(names)


def test_an_init_that_failed_once_can_be_retried() -> None:
    result = run(
        'sys.modules["http.server"] = None  # the package __init__ fails once\n'
        "try:\n"
        "    pc.REGISTRY\n"
        "    first = 'ok'\n"
        "except ImportError as error:\n"
        "    first = type(error).__name__\n"
        'del sys.modules["http.server"]\n'
        "from prometheus_client import push_to_gateway\n"
        'print(json.dumps({"first": first, "retry": push_to_gateway.__name__,'
        ' "registry": type(pc.REGISTRY).__name__}))'
    )
    assert result == {
        "first": "ModuleNotFoundError",
        "retry": "push_to_gateway",
        "registry": "CollectorRegistry",
    }
