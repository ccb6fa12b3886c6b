"""Read the one function localrt runs from the SAM template.

Everything (handler, code location, memory, timeout, variables, routes) comes from
template.yaml so nothing is configured twice.  Parsing uses SAM CLI's own loader so
the short-form tags (!Ref, !Sub, ...) mean exactly what they mean to `sam`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samcli.yamlhelper import yaml_parse

LOG = logging.getLogger("localrt")

FUNCTION_TYPE = "AWS::Serverless::Function"
LAYER_TYPE = "AWS::Serverless::LayerVersion"
API_EVENT = "Api"
HTTP_API_EVENT = "HttpApi"
ALL_METHODS = ["GET", "DELETE", "PUT", "POST", "HEAD", "OPTIONS", "PATCH"]
DEFAULT_ACCOUNT_ID = "123456789012"


class TemplateError(Exception):
    """The template cannot be run locally (no function, ambiguous function, ...)."""


class UnresolvableError(Exception):
    """An intrinsic function that has no meaning without a deployed stack."""


@dataclass(frozen=True)
class RouteSpec:
    path: str  # API Gateway form: /healthz, /items/{id}, /{proxy+} or $default
    methods: list[str]
    event_type: str  # API_EVENT (REST, payload 1.0) or HTTP_API_EVENT
    payload_format_version: str | None = None  # HttpApi only: "1.0" or "2.0" (default)
    stage_name: str | None = None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    handler: str
    code_dir: Path
    layer_dirs: list[Path]
    memory_size: int
    timeout: int
    # Variables as the template resolves them; `declared` may hold more names than
    # `variables` when a value could not be resolved locally (still overridable).
    variables: dict[str, str]
    declared: frozenset[str]
    routes: list[RouteSpec] = field(default_factory=list)
    binary_media_types: list[str] = field(default_factory=list)
    package_type: str = "Zip"


def load_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        doc = yaml_parse(fh.read())
    if not isinstance(doc, dict):
        raise TemplateError(f"{path}: not a template")
    return doc


def merge_globals(glob: Mapping[str, Any], local: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals rule: maps merge, lists append, scalars are replaced by the resource."""
    out: dict[str, Any] = dict(glob)
    for key, value in local.items():
        base = out.get(key)
        if isinstance(base, Mapping) and isinstance(value, Mapping):
            out[key] = merge_globals(base, value)
        elif isinstance(base, list) and isinstance(value, list):
            out[key] = base + value
        else:
            out[key] = value
    return out


class Resolver:
    """Resolves the intrinsics that have a local meaning (parameters and pseudo parameters)."""

    def __init__(self, template: Mapping[str, Any], region: str) -> None:
        params = template.get("Parameters") or {}
        self.values: dict[str, str] = {
            "AWS::Region": region,
            "AWS::AccountId": DEFAULT_ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "local",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{DEFAULT_ACCOUNT_ID}:stack/local/x",
        }
        self.no_value: set[str] = set()
        for name, spec in params.items():
            if isinstance(spec, Mapping) and "Default" in spec:
                self.values[name] = scalar_to_str(spec["Default"])
            else:
                self.no_value.add(name)

    def resolve(self, value: Any) -> str:
        if isinstance(value, Mapping) and len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                if arg in self.values:
                    return self.values[arg]
                raise UnresolvableError(f"!Ref {arg}")
            if fn == "Fn::Sub":
                return self._sub(arg)
            if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
                return str(arg[0]).join(self.resolve(part) for part in arg[1])
            raise UnresolvableError(fn)
        if isinstance(value, (Mapping, list)):
            raise UnresolvableError(type(value).__name__)
        return scalar_to_str(value)

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        local = {k: self.resolve(v) for k, v in extra.items()}

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} escapes a literal ${Literal}
                return "${" + name[1:] + "}"
            if name in local:
                return local[name]
            if name in self.values:
                return self.values[name]
            raise UnresolvableError(f"${{{name}}}")

        return re.sub(r"\$\{([^}]+)\}", repl, str(text))


def scalar_to_str(value: Any) -> str:
    # YAML gives bools/ints; Lambda variables are strings (true -> "true" like CloudFormation).
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def pick_function(resources: Mapping[str, Any], wanted: str | None) -> str:
    functions = {
        k: v
        for k, v in resources.items()
        if isinstance(v, Mapping) and v.get("Type") == FUNCTION_TYPE
    }
    if wanted:
        if wanted not in functions:
            raise TemplateError(
                f"no {FUNCTION_TYPE} named {wanted!r} (have: {', '.join(functions) or 'none'})"
            )
        return wanted
    with_api = [k for k, v in functions.items() if _api_events(v.get("Properties") or {})]
    if len(with_api) == 1:
        return with_api[0]
    if not with_api and len(functions) == 1:
        return next(iter(functions))
    raise TemplateError(
        f"cannot choose: {len(with_api)} functions have Api/HttpApi events; use --function"
    )


def _api_events(props: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    events = props.get("Events") or {}
    return {
        name: ev
        for name, ev in events.items()
        if isinstance(ev, Mapping) and ev.get("Type") in (API_EVENT, HTTP_API_EVENT)
    }


def dockerfile_cmd(dockerfile: Path) -> str | None:
    """First element of the last CMD in the Dockerfile (the handler for Lambda base images)."""
    text = re.sub(r"\\\r?\n", " ", dockerfile.read_text(encoding="utf-8"))
    cmd: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.upper().startswith("CMD ") or stripped.upper().startswith("CMD["):
            rest = stripped[3:].strip()
            try:
                parts = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
            except (ValueError, json.JSONDecodeError):
                parts = shlex.split(rest)
            if parts:
                cmd = str(parts[0])
    return cmd


def _layer_python_dir(template_dir: Path, layer: Mapping[str, Any]) -> Path | None:
    uri = (layer.get("Properties") or {}).get("ContentUri")
    if not isinstance(uri, str):
        return None
    return (template_dir / uri / "python").resolve()


def _stage_and_binary(
    resources: Mapping[str, Any],
    globals_: Mapping[str, Any],
    event_type: str,
    props: Mapping[str, Any],
) -> tuple[str | None, list[str]]:
    """Stage name and binary media types of the event's API (explicit or implicit)."""
    key = "RestApiId" if event_type == API_EVENT else "ApiId"
    glob_key = "Api" if event_type == API_EVENT else "HttpApi"
    api_props: dict[str, Any] = dict(globals_.get(glob_key) or {})
    ref = props.get(key)
    if isinstance(ref, Mapping) and isinstance(ref.get("Ref"), str):
        api = resources.get(ref["Ref"]) or {}
        api_props = merge_globals(api_props, api.get("Properties") or {})
    stage = api_props.get("StageName")
    default_stage = "Prod" if event_type == API_EVENT else None  # SAM's implicit API stage names
    binary = [str(t).replace("~1", "/") for t in api_props.get("BinaryMediaTypes") or []]
    return (stage if isinstance(stage, str) else default_stage), binary


def read_function(
    template_path: Path, wanted: str | None = None, region: str = "us-east-1"
) -> FunctionSpec:
    template = load_template(template_path)
    template_dir = template_path.resolve().parent
    resources: Mapping[str, Any] = template.get("Resources") or {}
    globals_: Mapping[str, Any] = template.get("Globals") or {}
    logical_id = pick_function(resources, wanted)
    resource = resources[logical_id]
    props = merge_globals(globals_.get("Function") or {}, resource.get("Properties") or {})
    resolver = Resolver(template, region)

    package_type = str(props.get("PackageType") or "Zip")
    layer_dirs: list[Path] = []
    if package_type == "Image":
        meta = resource.get("Metadata") or {}
        context = template_dir / str(meta.get("DockerContext") or ".")
        dockerfile = (context / str(meta.get("Dockerfile") or "Dockerfile")).resolve()
        code_dir = dockerfile.parent
        command = (props.get("ImageConfig") or {}).get("Command") or []
        handler = (
            str(command[0])
            if command
            else (dockerfile_cmd(dockerfile) if dockerfile.exists() else None)
        )
        if not handler:
            raise TemplateError(f"{logical_id}: no ImageConfig.Command and no CMD in {dockerfile}")
        # Images cannot use layers; the Dockerfile copies every layer to /opt/python.
        for res in resources.values():
            if isinstance(res, Mapping) and res.get("Type") == LAYER_TYPE:
                layer_dir = _layer_python_dir(template_dir, res)
                if layer_dir is not None:
                    layer_dirs.append(layer_dir)
    else:
        code_uri = props.get("CodeUri") or "."
        if not isinstance(code_uri, str):
            raise TemplateError(f"{logical_id}: CodeUri must be a local path to run locally")
        code_dir = (template_dir / code_uri).resolve()
        handler = str(props.get("Handler") or "")
        if not handler:
            raise TemplateError(f"{logical_id}: no Handler")
        for ref in props.get("Layers") or []:
            name = ref.get("Ref") if isinstance(ref, Mapping) else None
            layer = resources.get(name) if isinstance(name, str) else None
            layer_dir = (
                _layer_python_dir(template_dir, layer) if isinstance(layer, Mapping) else None
            )
            if layer_dir is None:
                LOG.warning("layer %r is not a local AWS::Serverless::LayerVersion: skipped", ref)
            else:
                layer_dirs.append(layer_dir)

    raw_vars: Mapping[str, Any] = (props.get("Environment") or {}).get("Variables") or {}
    variables: dict[str, str] = {}
    for name, value in raw_vars.items():
        try:
            variables[name] = resolver.resolve(value)
        except UnresolvableError as exc:
            LOG.warning(
                "variable %s: %s has no local value; not set (override it with --env-vars)",
                name,
                exc,
            )

    routes: list[RouteSpec] = []
    binary_types: list[str] = []
    for event in _api_events(props).values():
        ev_type = str(event["Type"])
        ev_props: Mapping[str, Any] = event.get("Properties") or {}
        method = str(ev_props.get("Method") or ("any" if ev_type == HTTP_API_EVENT else ""))
        path = ev_props.get("Path")
        if ev_type == HTTP_API_EVENT and not path:
            path = "$default"  # an HttpApi event without Path/Method is the API's default route
        if not isinstance(path, str) or not method:
            LOG.warning("event without a literal Path/Method skipped: %s", dict(ev_props))
            continue
        methods = (
            ALL_METHODS
            if method.lower() in ("any", "x-amazon-apigateway-any-method")
            else [method.upper()]
        )
        stage, binary = _stage_and_binary(resources, globals_, ev_type, ev_props)
        pfv = str(ev_props["PayloadFormatVersion"]) if "PayloadFormatVersion" in ev_props else None
        routes.append(RouteSpec(path, methods, ev_type, pfv, stage))
        binary_types += [b for b in binary if b not in binary_types]

    name = props.get("FunctionName")
    return FunctionSpec(
        logical_id=logical_id,
        function_name=name if isinstance(name, str) else logical_id,
        handler=handler,
        code_dir=code_dir,
        layer_dirs=layer_dirs,
        memory_size=int(props.get("MemorySize") or 128),
        timeout=int(props.get("Timeout") or 3),
        variables=variables,
        declared=frozenset(raw_vars),
        routes=routes,
        binary_media_types=binary_types,
        package_type=package_type,
    )


def load_env_vars_file(path: Path, spec: FunctionSpec) -> dict[str, str]:
    """SAM's --env-vars format: {"Parameters": {... all functions}, "<LogicalId>": {...}}."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TemplateError(f"{path}: expected a JSON object")
    out: dict[str, str] = {}
    for section in ("Parameters", spec.logical_id, spec.function_name):
        values = data.get(section)
        if isinstance(values, dict):
            out.update({k: scalar_to_str(v) for k, v in values.items() if v is not None})
    return out


def function_variables(
    spec: FunctionSpec, env_file: dict[str, str] | None, shell: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Template < --env-vars file < shell; only variables the template declares, like sam local."""
    shell = os.environ if shell is None else shell
    out = dict(spec.variables)
    for layer in (env_file or {}, shell):
        out.update({k: v for k, v in layer.items() if k in spec.declared})
    return out
