"""Modules whose body runs on first use, not when they are imported (PEP 562 ``__getattr__``).

Some packages do at import what the first response never needs: prometheus-client's
``__init__`` imports its exposition module (``http.server``, ``wsgiref``, ``ssl``), Powertools'
imports its Metrics and Tracer, and the module of its Logger imports jmespath for correlation
id paths the layer does not use. ``defer`` registers such a module in ``sys.modules`` with its
body not yet run: its submodules still import on their own, and the first name looked up on it
and not found runs the real body in place, once it succeeds (bench/results/importtime.md has
what each saves).

``when_imported`` is the other half: code to run once a module is imported by anyone, so that
the layer can join the OpenTelemetry API without importing it itself (otel_api.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from collections.abc import Callable
from types import ModuleType
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


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once ``name`` is imported: now if it is already, else right
    after its body has run, in the thread that imported it (a post-import hook). A callback
    that raises is logged, never raised to the code that imported the module."""
    module = sys.modules.get(name)
    if module is not None and "__getattr__" not in module.__dict__:
        _run(name, callback, module)
        return
    with _HOOKS_LOCK:
        _HOOKS.setdefault(name, []).append(callback)
        if not any(isinstance(finder, _PostImportFinder) for finder in sys.meta_path):
            sys.meta_path.insert(0, _PostImportFinder())


_HOOKS: dict[str, list[Callable[[ModuleType], None]]] = {}
_HOOKS_LOCK = threading.Lock()


def _run(name: str, callback: Callable[[ModuleType], None], module: ModuleType) -> None:
    try:
        callback(module)
    except Exception:  # the import itself must not fail for the layer's sake
        import logging

        logging.getLogger("lambda_observability").warning(
            "hook after importing %s failed", name, exc_info=True
        )


class _PostImportFinder:
    """A ``sys.meta_path`` finder that finds nothing itself: for a hooked name it asks the
    finders after it and wraps the loader they return, so the hooks run after the body."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in _HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _HookedLoader(spec.loader)  # type: ignore[assignment]
        return spec


class _HookedLoader:
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # The module keeps the real loader (importlib.resources, reload, pickling by spec).
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        name = module.__spec__.name if module.__spec__ is not None else module.__name__
        with _HOOKS_LOCK:
            callbacks = _HOOKS.pop(name, [])
            if not _HOOKS:
                sys.meta_path[:] = [
                    f for f in sys.meta_path if not isinstance(f, _PostImportFinder)
                ]
        for callback in callbacks:
            _run(name, callback, module)
