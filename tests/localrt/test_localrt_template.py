"""Reading the function from a SAM template (nothing configured twice)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from localrt.template import (
    ALL_METHODS,
    TemplateError,
    dockerfile_cmd,
    function_variables,
    load_env_vars_file,
    read_function,
)
from tests.conftest import ROOT
from tests.localrt.harness import FUNCTIONS, TEMPLATE

IMAGE_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Level: {Type: String, Default: DEBUG}
Globals:
  Function:
    Timeout: 5
    Environment:
      Variables: {GLOBAL_ONE: g}
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      PackageType: Image
      MemorySize: 512
      Environment:
        Variables:
          LEVEL: !Ref Level
          REGIONAL: !Sub "x-${AWS::Region}-${AWS::AccountId}"
          NUMBER: 5
          FLAG: true
          JOINED: !Join ["/", [a, !Ref Level]]
          DEPLOYED_ONLY: !GetAtt Other.Arn
      Events:
        Get: {Type: Api, Properties: {Path: /healthz, Method: get}}
        Head: {Type: Api, Properties: {Path: /healthz, Method: head}}
    Metadata:
      Dockerfile: functions/fn/Dockerfile
      DockerContext: ./ctx
  LayerA:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: layers/a}
  LayerB:
    Type: AWS::Serverless::LayerVersion
    Properties: {ContentUri: layers/b}
  Other:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: other, Handler: o.h, Runtime: python3.13}
"""


def _image_project(tmp_path: Path, dockerfile: str, template: str = IMAGE_TEMPLATE) -> Path:
    (tmp_path / "ctx/functions/fn").mkdir(parents=True)
    (tmp_path / "ctx/functions/fn/Dockerfile").write_text(textwrap.dedent(dockerfile))
    (tmp_path / "template.yaml").write_text(template)
    return tmp_path / "template.yaml"


def test_image_function(tmp_path: Path) -> None:
    path = _image_project(
        tmp_path,
        """\
        FROM public.ecr.aws/lambda/python:3.13
        COPY layers/a/python /opt/python
        CMD ["ignored.first"]
        CMD [ "app.handler" ]
        """,
    )
    spec = read_function(path, region="eu-central-1")
    assert spec.logical_id == "Fn" and spec.function_name == "Fn"
    assert spec.package_type == "Image"
    assert spec.handler == "app.handler"  # the last CMD wins, as in Docker
    assert spec.code_dir == (tmp_path / "ctx/functions/fn").resolve()
    # Images cannot use layers: the Dockerfile copies them to /opt/python, so every layer counts.
    assert spec.layer_dirs == [
        (tmp_path / "layers/a/python").resolve(),
        (tmp_path / "layers/b/python").resolve(),
    ]
    assert (spec.memory_size, spec.timeout) == (512, 5)
    assert spec.variables == {
        "GLOBAL_ONE": "g",
        "LEVEL": "DEBUG",
        "REGIONAL": "x-eu-central-1-123456789012",
        "NUMBER": "5",
        "FLAG": "true",
        "JOINED": "a/DEBUG",
    }
    assert "DEPLOYED_ONLY" in spec.declared and "DEPLOYED_ONLY" not in spec.variables
    assert [(r.path, r.methods, r.event_type, r.stage_name) for r in spec.routes] == [
        ("/healthz", ["GET"], "Api", "Prod"),
        ("/healthz", ["HEAD"], "Api", "Prod"),
    ]


def test_image_command_overrides_dockerfile(tmp_path: Path) -> None:
    template = IMAGE_TEMPLATE.replace(
        "      PackageType: Image\n",
        "      PackageType: Image\n      ImageConfig: {Command: [other.handler]}\n",
    )
    path = _image_project(tmp_path, 'FROM x\nCMD ["app.handler"]\n', template)
    assert read_function(path).handler == "other.handler"


def test_dockerfile_cmd_forms(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text('FROM x\nCMD [ \\\n  "split.handler" ]\n')
    assert dockerfile_cmd(dockerfile) == "split.handler"
    dockerfile.write_text("FROM x\nCMD shell.handler\n")
    assert dockerfile_cmd(dockerfile) == "shell.handler"
    dockerfile.write_text("FROM x\n")
    assert dockerfile_cmd(dockerfile) is None


def test_zip_function_of_the_test_template() -> None:
    spec = read_function(TEMPLATE, "EchoFunction", region="us-west-2")
    assert spec.handler == "lrt_handlers.handler"
    assert spec.code_dir == FUNCTIONS
    assert spec.layer_dirs == [FUNCTIONS / "layer" / "python"]  # from Layers: [!Ref TestLayer]
    assert (spec.memory_size, spec.timeout) == (192, 1)  # Globals
    assert spec.binary_media_types == ["application/octet-stream"]  # ~1 is SAM's escaped /
    routes = {(r.path, r.event_type, r.payload_format_version) for r in spec.routes}
    assert ("/v2compat/{name}", "HttpApi", "1.0") in routes
    assert ("/v2/{name}", "HttpApi", None) in routes
    rest_any = next(r for r in spec.routes if r.path == "/rest/{name}")
    assert rest_any.methods == ALL_METHODS  # Method: any


def test_function_choice() -> None:
    with pytest.raises(TemplateError, match="use --function"):
        read_function(TEMPLATE)  # two functions have API events
    with pytest.raises(TemplateError, match="no AWS::Serverless::Function named"):
        read_function(TEMPLATE, "Missing")


def test_defaults_and_http_api_default_route(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources:\n"
        "  F:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      Handler: m.h\n"
        "      Events:\n"
        "        All: {Type: HttpApi}\n"
    )
    spec = read_function(path)
    assert (spec.memory_size, spec.timeout) == (128, 3)  # Lambda's defaults
    assert spec.code_dir == tmp_path
    assert [(r.path, r.methods) for r in spec.routes] == [("$default", ALL_METHODS)]


def test_env_vars_file_and_precedence(tmp_path: Path) -> None:
    spec = read_function(TEMPLATE, "EchoFunction")
    env_file = tmp_path / "env.json"
    env_file.write_text(
        '{"Parameters": {"FILE_WINS": "p", "SHELL_WINS": "p", "NEW": "n"},'
        ' "EchoFunction": {"FILE_WINS": 7}}'
    )
    from_file = load_env_vars_file(env_file, spec)
    assert from_file == {"FILE_WINS": "7", "SHELL_WINS": "p", "NEW": "n"}
    merged = function_variables(spec, from_file, {"SHELL_WINS": "s", "HOME": "/x"})
    assert merged["TEMPLATE_ONLY"] == "template"
    assert merged["FILE_WINS"] == "7"
    assert merged["SHELL_WINS"] == "s"
    assert "NEW" not in merged and "HOME" not in merged  # only declared variables


def test_http_api_only_gateway_answers_404(tmp_path: Path) -> None:
    from localrt.environment import RuntimeSettings
    from localrt.pool import Pool
    from localrt.server import create_app

    path = tmp_path / "template.yaml"
    path.write_text(
        "Resources:\n"
        "  F:\n"
        "    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      Handler: m.h\n"
        "      Events:\n"
        "        Get: {Type: HttpApi, Properties: {Path: /items, Method: get}}\n"
    )
    spec = read_function(path)
    pool = Pool(RuntimeSettings(spec, {}, "us-east-1"), 1)
    client = create_app(spec, pool, [3000]).test_client()
    for method, url in [("GET", "/nope"), ("POST", "/items")]:
        resp = client.open(url, method=method)
        assert resp.status_code == 404  # HTTP APIs answer 404, REST APIs 403
        assert resp.get_json() == {"message": "Not Found"}
    assert client.get("/__localrt/stats").get_json()["environments"] == []
    pool.shutdown(0)


def test_sam_cli_reads_the_template(tmp_path: Path) -> None:
    # SAM CLI's own plugins and intrinsic resolver: what a hand-written reading had no answer
    # for (mappings, conditions, Select/Split, a resolved FunctionName) means what it means to sam.
    path = tmp_path / "template.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            Transform: AWS::Serverless-2016-10-31
            Parameters:
              Stage: {Type: String, Default: prod}
            Conditions:
              IsProd: !Equals [!Ref Stage, prod]
            Mappings:
              Sizes: {eu-west-1: {memory: 640}}
            Globals:
              Function:
                Environment: {Variables: {FROM_GLOBALS: g}}
            Resources:
              F:
                Type: AWS::Serverless::Function
                Properties:
                  FunctionName: !Sub "${AWS::StackName}-${Stage}-f"
                  Handler: m.h
                  MemorySize: !FindInMap [Sizes, !Ref AWS::Region, memory]
                  Environment:
                    Variables:
                      LEVEL: !If [IsProd, INFO, DEBUG]
                      FIRST: !Select [0, !Split [",", "a,b,c"]]
                      NOT_HERE: !ImportValue other-stack-export
            """
        )
    )
    spec = read_function(path, region="eu-west-1")
    assert spec.function_name == "local-prod-f"
    assert spec.memory_size == 640
    assert spec.variables == {"FROM_GLOBALS": "g", "LEVEL": "INFO", "FIRST": "a"}
    assert spec.declared == {"FROM_GLOBALS", "LEVEL", "FIRST", "NOT_HERE"}


@pytest.mark.parametrize(
    ("template", "function"),
    [
        ("bench/template.yaml", name)
        for name in (
            "BareFunction",
            "OursSyncFunction",
            "OursAsyncFunction",
            "OursTimedFunction",
            "OtelInstrumentationFunction",
            "OtelLiteSyncFunction",
            "OtelLiteAsyncFunction",
        )
    ]
    + [("tests/e2e/functions/template.yaml", "UserSpansFunction")],
)
def test_every_template_localrt_runs_reads(template: str, function: str) -> None:
    """The bench's and the e2e tests' templates, as SAM validates them (a Globals property SAM
    does not allow there once broke `make bench` without a test noticing)."""
    spec = read_function(ROOT / template, function)
    assert spec.routes
