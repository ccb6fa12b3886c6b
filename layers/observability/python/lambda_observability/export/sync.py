"""The sync trigger: export before the handler returns, because the environment may freeze
right after. The client waits for it, within the invocation's deadline."""

from __future__ import annotations

from .exporter import Exporter, deadline_within
from .policy import ExportPolicy


class SyncFlush:
    mode = "sync"

    def __init__(self, exporter: Exporter, policy: ExportPolicy) -> None:
        self._exporter = exporter
        self.policy = policy

    def after_invocation(self, request_id: str, remaining_seconds: float) -> None:
        if self.policy.due():
            self.policy.attempted()
            self._exporter.export(deadline_within(remaining_seconds))
