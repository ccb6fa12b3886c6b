"""Modules whose body runs on first use, not when they are imported (PEP 562 ``__getattr__``).

Some packages do at import what the first response never needs: prometheus-client's
``__init__`` imports its exposition module (``http.server``, ``wsgiref``, ``ssl``), Powertools'
imports its Metrics and Tracer, and the module of its Logger imports jmespath for correlation
id paths the layer does not use. ``defer`` registers such a module in ``sys.modules`` with its
body not yet run: its submodules still import on their own, and the first name looked up on it
and not found runs the real body in place, once it succeeds (bench/results/importtime.md has
what each saves).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from typing import Any


def defer(name: str, preload: tuple[str, ...] = ()) -> bool:
    """Register ``name`` as a module whose body runs on first attribute access.

    ``preload``: submodules to import now, bound on the module before anything asks for them
    (a submodule that does ``from . import values`` must find it, not run the body). Code that
    uses the module itself (``from prometheus_client import start_http_server``, ``hasattr``,
    ``dir`` after a lookup) still gets all of it, and the submodules already loaded are the
    ones the body binds. False, doing nothing, if it is imported already or not installed.
    """
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return False
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)
    lock = threading.RLock()
    running: list[bool] = []

    def load_on_first_use(attribute: str) -> Any:  # the module's __getattr__ (PEP 562)
        with lock:  # other threads wait for the one running the body
            # While the body runs, a miss is a submodule it is about to import: not found yet.
            if not running and "__getattr__" in module.__dict__:
                running.append(True)
                try:
                    loader.exec_module(module)
                    del module.__getattr__  # only once it succeeded: a failure can be retried
                finally:
                    running.clear()
        return object.__getattribute__(module, attribute)

    module.__getattr__ = load_on_first_use  # type: ignore[method-assign]
    sys.modules[name] = module
    for submodule in preload:
        importlib.import_module(f"{name}.{submodule}")
    return True
