"""The image's file tree, assembled without Docker and run under AWS's Runtime Interface Emulator.

No image can be built here, so this follows functions/healthz/Dockerfile step by step: COPY
instructions copy what .dockerignore lets through, the RUN's `pip install --require-hashes` installs
requirements.lock for the image's platform (manylinux x86_64, CPython 3.13) into /opt/python.
Then the handler runs from that tree alone -- a fresh interpreter without site-packages, whose
path holds only /var/task, /opt/python and the runtime client (as /var/runtime in the base image)
-- behind the RIE binary that ships in the aws-sam-cli wheel. It proves the image's contents
import and work, not merely that the tests' virtual environment does.
"""

from __future__ import annotations

import fnmatch
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stack.net import free_port
from tests.deploy.conftest import DOCKERFILE, LOCK, ROOT, TEMPLATE

PLATFORM_FLAGS = [
    "--platform",
    "manylinux2014_x86_64",
    "--implementation",
    "cp",
    "--python-version",
    "3.13",
    "--only-binary=:all:",
]
BASE_IMAGE = "public.ecr.aws/lambda/python:3.13"
TASK_ROOT = "/var/task"
EVENTS = ROOT / "events"


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{shlex.join(cmd)}\n{result.stdout}\n{result.stderr}"


@dataclass
class Image:
    root: Path
    handler: str = ""
    copies: list[tuple[str, str]] = field(default_factory=list)

    def path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")
    ]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def dockerignore_allows(rel: str) -> bool:
    """Docker's .dockerignore rules (last match wins; a match on a parent directory counts)."""
    allowed = True
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            matched = any(fnmatch.fnmatch(p, pattern[3:]) for p in parts)
        else:
            matched = any(
                fnmatch.fnmatch(p, pattern) and p.count("/") == pattern.count("/") for p in prefixes
            )
        if matched:
            allowed = negate
    return allowed


def _copy(image: Image, src: str, dest: str) -> None:
    source = ROOT / src
    assert source.exists(), f"COPY {src}: no such file"
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for file in files:
        rel = file.relative_to(ROOT).as_posix()
        if not dockerignore_allows(rel):
            continue  # not in the build context
        target = image.path(dest)
        if source.is_dir():
            target = target / file.relative_to(source)
        elif dest.endswith("/"):
            target = target / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    copied = [f for f in files if dockerignore_allows(f.relative_to(ROOT).as_posix())]
    assert copied, f"COPY {src}: .dockerignore keeps all of it out of the build context"


def _run(image: Image, command: str, wheels: Path) -> None:
    for step in command.split("&&"):
        argv = shlex.split(step)
        if argv[:2] == ["pip", "install"]:
            assert "--require-hashes" in argv and "--no-cache-dir" in argv, step
            assert "--only-binary=:all:" in argv, "the image must not build sdists (no build tools)"
            target = argv[argv.index("--target") + 1]
            requirements = image.path(argv[argv.index("-r") + 1])
            # Same packages and hashes, for the image's platform rather than this machine's.
            _pip(
                "download",
                "--dest",
                str(wheels),
                "--require-hashes",
                *PLATFORM_FLAGS,
                "-r",
                str(requirements),
            )
            _pip(
                "install",
                "--no-index",
                "--find-links",
                str(wheels),
                "--require-hashes",
                "--no-compile",
                *PLATFORM_FLAGS,
                "--target",
                str(image.path(target)),
                "-r",
                str(requirements),
            )
        elif argv[:3] == ["python", "-m", "compileall"]:
            # The base image's CPython 3.13 compiles; so does this one, with the same magic.
            flags = [a for a in argv[3:] if a.startswith("-")]
            paths = [str(image.path(a)) for a in argv[3:] if not a.startswith("-")]
            subprocess.run([_python(), "-m", "compileall", *flags, *paths], check=True)
        elif argv[:1] == ["rm"]:
            for path in argv[1:]:
                if not path.startswith("-"):
                    image.path(path).unlink()
        else:
            pytest.fail(f"RUN step this test does not know how to reproduce: {step}")


@pytest.fixture(scope="session")
def wheel_cache(request: pytest.FixtureRequest) -> Path:
    """Downloaded wheels, kept in pytest's cache so that reruns need no network."""
    return Path(request.config.cache.mkdir("deploy-image-wheels"))


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory, wheel_cache: Path) -> Image:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        pytest.fail("the image tree is built for and run as linux/x86_64 (the RIE binary too)")
    image = Image(tmp_path_factory.mktemp("image"))
    variables = {"LAMBDA_TASK_ROOT": TASK_ROOT}
    for instruction, args in dockerfile_instructions():
        expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: variables[m.group(1)], args)
        if instruction == "FROM":
            assert expanded == BASE_IMAGE
        elif instruction == "COPY":
            *sources, dest = shlex.split(expanded)
            for src in sources:
                _copy(image, src, dest)
                image.copies.append((src, dest))
        elif instruction == "RUN":
            _run(image, expanded, wheel_cache)
        elif instruction == "CMD":
            (image.handler,) = json.loads(expanded)
        else:
            pytest.fail(f"instruction this test does not reproduce: {instruction}")
    # The base image's runtime client (/var/runtime), for the image's platform too.
    runtime_pin = next(
        ln.strip()
        for ln in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if ln.startswith("awslambdaric==")
    )
    _pip("download", "--dest", str(wheel_cache), *PLATFORM_FLAGS, runtime_pin)
    _pip(
        "install",
        "--no-index",
        "--find-links",
        str(wheel_cache),
        *PLATFORM_FLAGS,
        "--target",
        str(image.path("/var/runtime")),
        runtime_pin,
    )
    return image


def _python() -> str:
    candidate = Path(sys.base_prefix) / "bin" / "python3.13"
    return str(candidate) if candidate.exists() else sys.executable


def _bootstrap(image: Image, code: str) -> list[str]:
    """A fresh CPython 3.13 (-I: no user site, no PYTHON* variables; -S: no site-packages) whose
    path is the image's: /var/task, /opt/python (Lambda adds it for layers), /var/runtime."""
    dirs = [str(image.path(p)) for p in (TASK_ROOT, "/opt/python", "/var/runtime")]
    prelude = f"import sys; sys.path[:0] = {dirs!r}\n"
    return [_python(), "-I", "-S", "-c", prelude + code]


def test_tree_holds_only_what_the_image_needs(image: Image) -> None:
    task = image.path(TASK_ROOT)
    assert sorted(p.name for p in task.iterdir()) == ["__pycache__", "app.py", "health.py"]
    assert image.handler == "app.handler"
    opt = image.path("/opt/python")
    assert (opt / "lambda_observability" / "__init__.py").is_file()
    # The host's bytecode stays out (.dockerignore): the only bytecode is the image's own,
    # compiled at build time for CPython 3.13, one file per module of the layer and function.
    sources = sorted([*(opt / "lambda_observability").rglob("*.py"), *task.glob("*.py")], key=str)
    compiled = sorted(
        [*(opt / "lambda_observability").rglob("*.pyc"), *task.rglob("*.pyc")], key=str
    )
    expected = [s.parent / "__pycache__" / f"{s.stem}.cpython-313.pyc" for s in sources]
    assert compiled == sorted(expected, key=str)
    assert not image.path("/tmp/requirements.lock").exists()  # removed in the same RUN
    installed = {p.name.split("-")[0].lower().replace("_", "-") for p in opt.glob("*.dist-info")}
    locked = {
        m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==", LOCK.read_text(), re.M)
    }
    assert installed == locked
    for forbidden in ("boto3", "botocore", "pip", "setuptools", "wheel"):
        assert not (opt / forbidden).exists(), f"{forbidden} ended up in /opt/python"
    # Nothing of the repository beyond the copied code: no tests, no template, no local settings.
    assert not list(image.root.rglob("template.yaml")) and not list(image.root.rglob("conftest.py"))
    assert not dockerignore_allows(".venv/bin/python") and not dockerignore_allows(
        "tests/conftest.py"
    )


def test_tree_imports_without_boto3(image: Image) -> None:
    # The SDK and the registry load at the first export, not at init: imported here by name.
    code = (
        "import importlib.util, json, sys\n"
        "import app\n"
        "mods = ['aws_lambda_powertools', 'opentelemetry.sdk', 'prometheus_client',\n"
        "        'lambda_observability', 'app']\n"
        "import importlib\n"
        "boto3_at_init = 'boto3' in sys.modules or 'botocore' in sys.modules\n"
        "for m in mods: importlib.import_module(m)\n"
        "print(json.dumps({'boto3_loaded': boto3_at_init,\n"
        "  'boto3_findable': importlib.util.find_spec('boto3') is not None,\n"
        "  'files': {m: sys.modules[m].__file__ or list(sys.modules[m].__path__)[0]\n"
        "            for m in mods}}))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_REGION": "eu-west-1",
        "PUSHGATEWAY_AUTH_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x",
    }
    result = subprocess.run(
        _bootstrap(image, code), capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The Lambda runtime's boto3 is not part of the image's contract: only the auth lookup needs it.
    assert report == {**report, "boto3_loaded": False, "boto3_findable": False}
    for module, file in report["files"].items():
        assert Path(file).is_relative_to(image.root), f"{module} imported from {file}, not the tree"


def _function_variables() -> dict[str, str]:
    from localrt.template import read_function

    spec = read_function(TEMPLATE, "HealthzFunction", "eu-west-1")
    assert spec.package_type == "Image"
    return spec.variables


@pytest.fixture(scope="session")
def rie(image: Image, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import samcli

    binary = Path(samcli.__file__).parent / "local" / "rapid" / "aws-lambda-rie-x86_64"
    assert os.access(binary, os.X_OK), binary
    api_port, rie_port = free_port(), free_port()
    bootstrap = (
        "import os; os.chdir(sys.path[0])\n"
        "from awslambdaric.__main__ import main\n"
        f"main(['awslambdaric', {image.handler!r}])\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        **_function_variables(),
        "LAMBDA_TASK_ROOT": str(image.path(TASK_ROOT)),
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_LAMBDA_FUNCTION_NAME": "healthz",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "10",
    }
    log = tmp_path_factory.mktemp("rie") / "rie.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "--runtime-api-address",
                f"127.0.0.1:{api_port}",
                "--runtime-interface-emulator-address",
                f"127.0.0.1:{rie_port}",
                *_bootstrap(image, bootstrap),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=image.path(TASK_ROOT),
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", rie_port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "RIE did not listen:\n" + log.read_text()
                time.sleep(0.05)
        yield f"http://127.0.0.1:{rie_port}/2015-03-31/functions/function/invocations", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _invoke(url: str, event: str) -> dict[str, Any]:
    data = (EVENTS / event).read_bytes()
    request = urllib.request.Request(url, data=data, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, Any] = json.load(response)
    return result


def test_handler_from_the_tree_answers_health_json(rie: tuple[str, Path]) -> None:
    url, log = rie
    response = _invoke(url, "rest-get.json")
    assert response["statusCode"] == 200, (response, log.read_text())
    # REST (payload 1.0) answers may carry multiValueHeaders instead of headers.
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    headers.update({k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()})
    assert headers["content-type"] == "application/health+json"
    body = json.loads(response["body"])
    assert body["status"] == "pass"
    assert body["serviceId"] == "healthz"
    assert body["checks"]["uptime"][0]["observedUnit"] == "s"
    # A second, warm invocation in the same environment; HEAD answers without a body.
    head = _invoke(url, "rest-head.json")
    assert head["statusCode"] == 200 and head["body"] == ""
    output = log.read_text()
    assert "Traceback" not in output, output
    records = []
    for line in output.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    messages = {r.get("message") for r in records}
    # The layer's structured logs, from the tree's code: the export mode chosen at cold start
    # (async: the RIE serves the Extensions API) and the handler's own line.
    assert "Monitoring endpoint invoked! Counter was incremented!" in messages, output
    (mode,) = [r for r in records if r.get("message") == "telemetry export mode"]
    assert mode["export_mode"] == "async"
    # Spans left through the extension after each response (console exporter: no endpoint set).
    spans = [r["name"] for r in records if "context" in r and "name" in r]
    assert spans == ["GET /healthz", "HEAD /healthz"], output


def test_lock_pins_what_the_requirements_ask_for() -> None:
    """The lock is current: every requirement is locked at its pinned version, with hashes."""
    locked: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            locked[match.group(1).lower()] = (match.group(2), block.count("--hash=sha256:"))
    assert all(hashes >= 1 for _, hashes in locked.values())
    sources = [
        ROOT / "layers" / "observability" / "requirements.txt",
        ROOT / "functions" / "healthz" / "requirements.txt",
    ]
    for source in sources:
        for line in source.read_text().splitlines():
            requirement = line.split("#")[0].strip()
            if not requirement:
                continue
            name, version = requirement.split("==")
            assert locked.get(name.lower(), ("missing", 0))[0] == version, (
                f"{requirement}: run `make lock`"
            )
    assert "boto3" not in locked and "botocore" not in locked
