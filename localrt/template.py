"""Read the one function localrt runs from the SAM template.

Everything (handler, code location, memory, timeout, variables, routes) comes from
template.yaml so nothing is configured twice.  SAM CLI does the reading, as for `sam local`:
its loader (short-form tags), its translator plugins (Globals merged into each resource, the
implicit APIs made), its intrinsic resolver, and SamFunctionProvider for the function's
properties.  What is left here is what SAM CLI has no local answer for: which function to run,
the handler of an image (sam builds the image; localrt reads its Dockerfile's CMD), the layers an
image copies, and the routes of one function with each route's own API stage and binary types.
Where SAM's resolver differs from CloudFormation (a `${Name}` it cannot resolve in a `!Sub`
becomes `$Name.Ref`, `${!Literal}` is left escaped), localrt gives what `sam local` gives.
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

from samcli.lib.intrinsic_resolver.intrinsic_property_resolver import IntrinsicResolver
from samcli.lib.intrinsic_resolver.intrinsics_symbol_table import IntrinsicsSymbolTable
from samcli.lib.intrinsic_resolver.invalid_intrinsic_exception import (
    InvalidIntrinsicException,
    InvalidSymbolException,
)
from samcli.lib.providers.provider import Function, Stack
from samcli.lib.providers.sam_function_provider import SamFunctionProvider
from samcli.lib.samlib.wrapper import SamTranslatorWrapper
from samcli.yamlhelper import yaml_parse

LOG = logging.getLogger("localrt")

FUNCTION_TYPE = "AWS::Serverless::Function"
LAYER_TYPE = "AWS::Serverless::LayerVersion"
API_EVENT = "Api"
HTTP_API_EVENT = "HttpApi"
ALL_METHODS = ["GET", "DELETE", "PUT", "POST", "HEAD", "OPTIONS", "PATCH"]
# A Ref or GetAtt with no local meaning must stay unresolved (reported, and left to --env-vars),
# not become what sam local makes up for it: the parameter's own name, or an ARN of the wrong
# kind. So the symbol table knows parameters (with their Default) and pseudo parameters only;
# SAM's table takes an empty dict for "the defaults", hence one entry that matches nothing.
_NO_FAKES: dict[str, Any] = {"localrt: nothing": {}}
DEFAULT_ACCOUNT_ID = str(IntrinsicsSymbolTable.DEFAULT_PSEUDO_PARAM_VALUES["AWS::AccountId"])


class TemplateError(Exception):
    """The template cannot be run locally (no function, ambiguous function, ...)."""


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
    # Lambda Managed Instances: workers per execution environment (CapacityProviderConfig's
    # PerExecutionEnvironmentMaxConcurrency, SAM's default 4); None for on-demand functions.
    max_concurrency: int | None = None
    # External extensions: folders whose executables Lambda finds in /opt/extensions (each
    # layer's `extensions/`; for an image, what its Dockerfile copies there: folders or files).
    extension_dirs: list[Path] = field(default_factory=list)


def load_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        doc = yaml_parse(fh.read())
    if not isinstance(doc, dict):
        raise TemplateError(f"{path}: not a template")
    return doc


def sam_template(template_path: Path, region: str) -> tuple[dict[str, Any], IntrinsicResolver]:
    """The template as SAM CLI reads it for `sam local` (Globals merged, implicit APIs made), and
    a resolver of the intrinsics that have a local meaning."""
    template = load_template(template_path)
    pseudo = {**IntrinsicsSymbolTable.DEFAULT_PSEUDO_PARAM_VALUES, "AWS::Region": region}
    template = SamTranslatorWrapper(template, parameter_values=pseudo).run_plugins()
    table = IntrinsicsSymbolTable(
        template=template,
        logical_id_translator=pseudo,
        default_type_resolver=_NO_FAKES,
        common_attribute_resolver=_NO_FAKES,
    )
    return template, IntrinsicResolver(template=template, symbol_resolver=table)


class _ResolvedStack(Stack):  # type: ignore[misc]
    """A stack whose template is resolved already: SamFunctionProvider reads `resources`,
    which in SAM's Stack would run the plugins and SAM's own resolving (made-up values) again."""

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.template_dict.get("Resources") or {})


def resolve_variable(resolver: IntrinsicResolver, name: str, value: Any) -> str | None:
    """One variable's local value, or None (with a warning) when it has none: each variable on
    its own, as resolving the whole template would leave the rest of the function unresolved,
    or put a "$Name.Ref" placeholder in a !Sub."""
    try:
        resolved = resolver.intrinsic_property_resolver(value, ignore_errors=False)
    except (InvalidIntrinsicException, InvalidSymbolException):
        resolved = None
    if resolved is None or isinstance(resolved, (Mapping, list)):
        what = next(iter(value), "") if isinstance(value, Mapping) else type(value).__name__
        if what == "Ref":
            what = f"!Ref {value['Ref']}"
        LOG.warning(
            "variable %s: %s has no local value; not set (override it with --env-vars)", name, what
        )
        return None
    return scalar_to_str(resolved)


LMI_DEFAULT_MAX_CONCURRENCY = 4  # SAM CLI's default (samcli.lib.providers.provider)


def _if_branch(resolver: IntrinsicResolver, value: Any) -> Any:
    """The chosen branch of an `Fn::If` (its condition evaluated locally), else the value."""
    while isinstance(value, Mapping) and list(value) == ["Fn::If"]:
        cond, yes, no = value["Fn::If"]
        chosen = resolver.intrinsic_property_resolver({"Fn::If": [cond, True, False]}, False)
        value = yes if chosen else no
    return value


def capacity_max_concurrency(resolver: IntrinsicResolver, config: Any) -> int | None:
    """Workers per environment of a Lambda Managed Instances function, None if it is not one:
    CapacityProviderConfig's PerExecutionEnvironmentMaxConcurrency (SAM's or CloudFormation's
    `LambdaManagedInstancesCapacityProviderConfig` shape), 4 when unset, as `sam local` does."""
    try:
        config = _if_branch(resolver, config)
    except (InvalidIntrinsicException, InvalidSymbolException) as exc:
        LOG.warning("CapacityProviderConfig: condition has no local value (%s): on-demand", exc)
        return None
    if isinstance(config, Mapping) and list(config) == ["Ref"] and config["Ref"] == "AWS::NoValue":
        return None
    if not isinstance(config, Mapping) or not config:
        return None
    inner = config.get("LambdaManagedInstancesCapacityProviderConfig", config)
    raw = inner.get("PerExecutionEnvironmentMaxConcurrency") if isinstance(inner, Mapping) else None
    if raw is None:
        return LMI_DEFAULT_MAX_CONCURRENCY
    value = resolve_variable(resolver, "PerExecutionEnvironmentMaxConcurrency", raw)
    try:
        workers = int(value) if value is not None else LMI_DEFAULT_MAX_CONCURRENCY
    except ValueError:
        LOG.warning("PerExecutionEnvironmentMaxConcurrency %r is not a number: 4", value)
        workers = LMI_DEFAULT_MAX_CONCURRENCY
    if workers < 1:
        raise TemplateError(f"PerExecutionEnvironmentMaxConcurrency must be >= 1, not {workers}")
    return workers


def scalar_to_str(value: Any) -> str:
    # YAML gives bools/ints; Lambda variables are strings (true -> "true" like CloudFormation).
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def pick_function(functions: Mapping[str, Function], wanted: str | None) -> Function:
    if wanted:
        if wanted not in functions:
            raise TemplateError(
                f"no {FUNCTION_TYPE} named {wanted!r} (have: {', '.join(functions) or 'none'})"
            )
        return functions[wanted]
    with_api = [f for f in functions.values() if _api_events(f.events or {})]
    if len(with_api) == 1:
        return with_api[0]
    if not with_api and len(functions) == 1:
        return next(iter(functions.values()))
    raise TemplateError(
        f"cannot choose: {len(with_api)} functions have Api/HttpApi events; use --function"
    )


def _api_events(events: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
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


def _stage_and_binary(
    resources: Mapping[str, Any], event_type: str, props: Mapping[str, Any]
) -> tuple[str | None, list[str]]:
    """Stage name and binary media types of the event's API. SAM's plugins have given every
    event its API (the implicit ones included, with Globals.Api/HttpApi merged in); SAM's
    ApiProvider is not used because it merges every function's routes into one API with one
    stage, where a route here keeps its own API's."""
    ref = props.get("RestApiId" if event_type == API_EVENT else "ApiId")
    name = ref.get("Ref") if isinstance(ref, Mapping) else ref
    api = resources.get(name) if isinstance(name, str) else None
    api_props: Mapping[str, Any] = (api.get("Properties") or {}) if isinstance(api, Mapping) else {}
    stage = api_props.get("StageName")
    default_stage = "Prod" if event_type == API_EVENT else None  # SAM's implicit API stage names
    binary = [str(t).replace("~1", "/") for t in api_props.get("BinaryMediaTypes") or []]
    return (stage if isinstance(stage, str) else default_stage), binary


def _routes(function: Function, resources: Mapping[str, Any]) -> tuple[list[RouteSpec], list[str]]:
    routes: list[RouteSpec] = []
    binary_types: list[str] = []
    for event in _api_events(function.events or {}).values():
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
        stage, binary = _stage_and_binary(resources, ev_type, ev_props)
        pfv = str(ev_props["PayloadFormatVersion"]) if "PayloadFormatVersion" in ev_props else None
        routes.append(RouteSpec(path, methods, ev_type, pfv, stage))
        binary_types += [b for b in binary if b not in binary_types]
    return routes, binary_types


def _image_code(
    function: Function, resources: Mapping[str, Any], template_dir: Path
) -> tuple[Path, str, list[Path]]:
    """An image's code directory, handler and layers: what `sam build` would put in it."""
    meta = function.metadata or {}
    context = template_dir / str(meta.get("DockerContext") or ".")
    dockerfile = (context / str(meta.get("Dockerfile") or "Dockerfile")).resolve()
    command = (function.imageconfig or {}).get("Command") or []
    handler = (
        str(command[0])
        if command
        else (dockerfile_cmd(dockerfile) if dockerfile.exists() else None)
    )
    if not handler:
        raise TemplateError(f"{function.name}: no ImageConfig.Command and no CMD in {dockerfile}")
    # Images cannot use layers; the Dockerfile copies every layer to /opt/python.
    layer_dirs = [
        (template_dir / str(res["Properties"]["ContentUri"]) / "python").resolve()
        for res in resources.values()
        if isinstance(res, Mapping)
        and res.get("Type") == LAYER_TYPE
        and isinstance((res.get("Properties") or {}).get("ContentUri"), str)
    ]
    return dockerfile.parent, handler, layer_dirs


def _zip_code(function: Function) -> tuple[Path, str, list[Path]]:
    if not isinstance(function.codeuri, str):
        raise TemplateError(f"{function.name}: CodeUri must be a local path to run locally")
    if not function.handler:
        raise TemplateError(f"{function.name}: no Handler")
    layer_dirs: list[Path] = []
    for layer in function.layers:
        if layer.is_defined_within_template and isinstance(layer.codeuri, str):
            layer_dirs.append((Path(layer.codeuri) / "python").resolve())
        else:
            LOG.warning("layer %r is not a local AWS::Serverless::LayerVersion: skipped", layer.arn)
    return Path(function.codeuri).resolve(), function.handler, layer_dirs


def dockerfile_extension_dirs(dockerfile: Path, context: Path) -> list[Path]:
    """Sources of the Dockerfile's COPY/ADD lines that land in /opt/extensions."""
    if not dockerfile.exists():
        return []
    text = re.sub(r"\\\r?\n", " ", dockerfile.read_text(encoding="utf-8"))
    found: list[Path] = []
    for line in text.splitlines():
        parts = shlex.split(line.strip(), comments=True) if line.strip() else []
        if len(parts) < 3 or parts[0].upper() not in ("COPY", "ADD"):
            continue
        args = [a for a in parts[1:] if not a.startswith("--")]
        if len(args) < 2 or not args[-1].rstrip("/").startswith("/opt/extensions"):
            continue
        for src in args[:-1]:
            found.append((context / src).resolve())  # a folder, or one executable
    return found


def _extension_dirs(
    function: Function, resources: Mapping[str, Any], template_dir: Path
) -> list[Path]:
    if function.packagetype == "Image":
        meta = function.metadata or {}
        context = template_dir / str(meta.get("DockerContext") or ".")
        dockerfile = (context / str(meta.get("Dockerfile") or "Dockerfile")).resolve()
        return dockerfile_extension_dirs(dockerfile, context)
    return [
        (Path(layer.codeuri) / "extensions").resolve()
        for layer in function.layers
        if layer.is_defined_within_template and isinstance(layer.codeuri, str)
    ]


def read_function(
    template_path: Path, wanted: str | None = None, region: str = "us-east-1"
) -> FunctionSpec:
    template_path = template_path.resolve()  # SAM makes code paths absolute from it
    template, resolver = sam_template(template_path, region)
    resolved: dict[str, Any] = resolver.resolve_template(ignore_errors=True)
    stack = _ResolvedStack("", "", str(template_path), None, resolved)
    provider = SamFunctionProvider([stack], ignore_code_extraction_warnings=True)
    functions = {f.name: f for f in provider.get_all() if f.stack_path == ""}
    function = pick_function(functions, wanted)
    resources: Mapping[str, Any] = resolved.get("Resources") or {}
    if function.packagetype == "Image":
        code_dir, handler, layer_dirs = _image_code(function, resources, template_path.parent)
    else:
        code_dir, handler, layer_dirs = _zip_code(function)

    properties = template["Resources"][function.name].get("Properties") or {}
    raw_vars: Mapping[str, Any] = (properties.get("Environment") or {}).get("Variables") or {}
    variables: dict[str, str] = {}
    for name, value in raw_vars.items():
        local = resolve_variable(resolver, name, value)
        if local is not None:
            variables[name] = local
    routes, binary_types = _routes(function, resources)
    max_concurrency = capacity_max_concurrency(resolver, properties.get("CapacityProviderConfig"))
    return FunctionSpec(
        logical_id=function.name,
        # an unresolvable FunctionName stays a map: the logical id stands in for it
        function_name=name if isinstance(name := function.functionname, str) else function.name,
        handler=handler,
        code_dir=code_dir,
        layer_dirs=layer_dirs,
        memory_size=int(function.memory or 128),
        timeout=int(function.timeout or 3),
        variables=variables,
        declared=frozenset(raw_vars),
        routes=routes,
        binary_media_types=binary_types,
        package_type=str(function.packagetype or "Zip"),
        max_concurrency=max_concurrency,
        extension_dirs=_extension_dirs(function, resources, template_path.parent),
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
