"""The Go programs that scripts/build-go-tools.sh (`make go-tools`) builds from tools/.

Each is built into ``.tools/go/<name>-<key>/<name>``, the key being the first 16 hex digits of
the SHA-256 of its manifest's files, as the script computes it. Looking a binary up by the same
key means a test never runs a build of a manifest that has since changed: it is told to run
`make go-tools` instead. ``$<ENV_VAR>`` points at another binary.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from stack._proc import StackError

REPO = Path(__file__).resolve().parent.parent
BUILT = REPO / ".tools" / "go"


@dataclass(frozen=True)
class GoTool:
    name: str
    manifests: tuple[str, ...]  # relative to the repository root, hashed in this order
    env_var: str

    def key(self) -> str:
        digest = hashlib.sha256()
        for manifest in self.manifests:
            digest.update((REPO / manifest).read_bytes())
        return digest.hexdigest()[:16]

    def built_path(self, built: Path = BUILT) -> Path:
        return built / f"{self.name}-{self.key()}" / self.name

    def binary(self, built: Path = BUILT) -> str:
        """``$env_var`` if set, else the build of the current manifest; StackError if neither."""
        override = os.environ.get(self.env_var)
        if override:
            if shutil.which(override) is None:
                raise StackError(f"{self.env_var}={override!r} is not an executable file")
            return override
        path = self.built_path(built)
        if not os.access(path, os.X_OK):
            raise StackError(
                f"{self.name} is not built for the current {', '.join(self.manifests)}: run "
                f"`make go-tools` (scripts/build-go-tools.sh), or point {self.env_var} at a binary"
            )
        return str(path)


OTELCOL = GoTool("otelcol-healthz", ("tools/otelcol/builder-config.yaml",), "OTELCOL_BIN")
PUSHGATEWAY = GoTool(
    "pushgateway", ("tools/pushgateway/go.mod", "tools/pushgateway/go.sum"), "PUSHGATEWAY_BIN"
)
