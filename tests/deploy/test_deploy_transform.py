"""template.yaml through aws-sam-translator, as CloudFormation deploys it: what matters."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import FAKE_IMAGE_URI, ROOT, load_template

PG = "https://pushgateway.example.com"
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pushgateway-auth-AbCdEf"

Transformed = Callable[..., dict[str, Any]]


def of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for policy in role["Properties"].get("Policies", []):
        if "Fn::If" in policy:  # [condition, policy, AWS::NoValue]
            policy = policy["Fn::If"][1]
        found.extend(policy["PolicyDocument"]["Statement"])
    return found


def env_reads(*paths: Path) -> set[str]:
    """Names of the environment variables the code reads: env.get("X"), os.environ["X"], ..."""
    names: set[str] = set()
    for path in paths:
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    base = ast.unparse(node.func.value)
                    if node.func.attr in ("get", "getenv") and re.search(
                        r"\b(env|environ|os)$", base
                    ):
                        arg = node.args[0] if node.args else None
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                            names.add(arg.value)
                    # The layer's readers: config.number(env, "X", ...), choice(env, "X", ...)
                    if node.func.attr in ("number", "choice") and len(node.args) >= 2:
                        name = node.args[1]
                        if isinstance(name, ast.Constant) and isinstance(name.value, str):
                            names.add(name.value)
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("number", "choice")
                    and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)
                ):
                    names.add(node.args[1].value)
                elif (
                    isinstance(node, ast.Subscript)
                    and re.search(r"\b(env|environ)$", ast.unparse(node.value))
                    and isinstance(node.slice, ast.Constant)
                    and isinstance(node.slice.value, str)
                ):
                    names.add(node.slice.value)
    return names


# Read by the code but deliberately not declared:
NOT_DECLARED = {
    # Lambda sets these itself and refuses templates that declare its reserved variables.
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_MAX_CONCURRENCY",  # from PerExecutionEnvironmentMaxConcurrency, on LMI
    "AWS_REGION",
    # The workers' shared directory on LMI: made per environment unless a user sets it.
    "PROMETHEUS_MULTIPROC_DIR",
    # Powertools' legacy name for POWERTOOLS_LOG_LEVEL, read when that is unset.
    "LOG_LEVEL",
    # Per-signal OpenTelemetry overrides of the declared OTEL_EXPORTER_OTLP_* variables. An
    # empty value is not "unset" to the OpenTelemetry SDK (an empty TRACES_ENDPOINT replaces the
    # declared endpoint), so they cannot be declared with a neutral default.
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
}


def test_health_function_is_an_image_behind_the_live_alias(transformed: Transformed) -> None:
    out = transformed()
    fn = out["Resources"]["HealthzFunction"]
    assert fn["Type"] == "AWS::Lambda::Function"
    props = fn["Properties"]
    assert props["PackageType"] == "Image"
    assert props["Code"] == {"ImageUri": FAKE_IMAGE_URI}
    assert "Layers" not in props  # Lambda refuses layers on images
    assert "Runtime" not in props and "Handler" not in props
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Timeout"] == 3 and props["MemorySize"] == 256
    # AWS::LanguageExtensions resolves the template's !If before SAM's transform: 0 reserves none.
    assert props["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    assert load_template()["Parameters"]["ReservedConcurrency"]["Default"] == 10
    unreserved = transformed(ReservedConcurrency="0")["Resources"]["HealthzFunction"]
    assert "ReservedConcurrentExecutions" not in unreserved["Properties"]
    (alias,) = of_type(out, "AWS::Lambda::Alias").values()
    assert alias["Properties"]["Name"] == "live"
    assert "CodeDeployLambdaAliasUpdate" in alias["UpdatePolicy"]


def test_routes_get_head_healthz_and_readyz_invoke_the_alias(transformed: Transformed) -> None:
    out = transformed()
    (api,) = of_type(out, "AWS::ApiGateway::RestApi").values()
    paths = api["Properties"]["Body"]["paths"]
    assert set(paths) == {"/healthz", "/readyz", "/{proxy+}"}
    for path in ("/healthz", "/readyz"):
        assert {"get", "head", "x-amazon-apigateway-any-method"} <= set(paths[path])
        for method in ("get", "head"):
            integration = paths[path][method]["x-amazon-apigateway-integration"]
            assert integration["type"] == "aws_proxy"
            assert "${HealthzFunctionAliaslive}" in integration["uri"]["Fn::Sub"]
    permissions = {
        k: v
        for k, v in of_type(out, "AWS::Lambda::Permission").items()
        if v["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }
    assert len(permissions) == 7 and all(  # one per Api event
        p["Properties"]["FunctionName"] == {"Ref": "HealthzFunctionAliaslive"}
        for p in permissions.values()
    )


def test_every_variable_the_function_reads_is_declared(transformed: Transformed) -> None:
    variables = transformed()["Resources"]["HealthzFunction"]["Properties"]["Environment"][
        "Variables"
    ]
    # The names from before issue 5 stay as they are.
    assert {
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_PROPAGATORS",
        "OTEL_TRACES_SAMPLER",
        "OTEL_RESOURCE_ATTRIBUTES",
        "POWERTOOLS_LOG_LEVEL",
        "PUSHGATEWAY_URL",
        "PUSHGATEWAY_JOB",
        "PUSHGATEWAY_TIMEOUT_SECONDS",
        "PUSHGATEWAY_AUTH_SECRET_ARN",
    } <= set(variables)
    assert variables["OBSERVABILITY_EXPORT_MODE"] == {"Ref": "ExportMode"}
    params = load_template()["Parameters"]
    assert params["ExportMode"]["AllowedValues"] == ["auto", "async", "sync"]
    assert params["ExportMode"]["Default"] == "auto"
    assert variables["PUSHGATEWAY_JOB"] == "healthz"  # stack/alerts.yml selects job="healthz"
    read = env_reads(
        ROOT / "functions" / "healthz" / "app.py", ROOT / "layers" / "observability" / "python"
    )
    assert {
        "PUSHGATEWAY_URL",
        "OBSERVABILITY_EXPORT_MODE",
        "OTEL_BSP_MAX_QUEUE_SIZE",
    } <= read  # the scan works
    assert sorted(read - set(variables) - NOT_DECLARED) == []
    assert not NOT_DECLARED & set(variables)


def test_janitor_variables_are_declared(transformed: Transformed) -> None:
    fn = transformed(PushgatewayUrl=PG)["Resources"]["PushgatewayJanitorFunction"]
    variables = fn["Properties"]["Environment"]["Variables"]
    read = env_reads(ROOT / "functions" / "pushgateway_janitor" / "app.py")
    assert read == {
        "PUSHGATEWAY_URL",
        "PUSHGATEWAY_JOB",
        "PUSHGATEWAY_GROUP_TTL_SECONDS",
        "PUSHGATEWAY_AUTH_SECRET_ARN",
    }
    assert set(variables) == read
    assert variables["PUSHGATEWAY_JOB"] == "healthz"


def _role_of(out: dict[str, Any], function: str) -> dict[str, Any]:
    role_ref = out["Resources"][function]["Properties"]["Role"]
    assert role_ref == {
        "Fn::GetAtt": [
            f"{function}Role" if function == "HealthzFunction" else "PushgatewayJanitorRole",
            "Arn",
        ]
    }
    role: dict[str, Any] = out["Resources"][role_ref["Fn::GetAtt"][0]]
    return role


@pytest.mark.parametrize(
    ("function", "log_group"),
    [
        ("HealthzFunction", "HealthzLogGroup"),
        ("PushgatewayJanitorFunction", "PushgatewayJanitorLogGroup"),
    ],
)
def test_least_privilege_roles(transformed: Transformed, function: str, log_group: str) -> None:
    out = transformed(PushgatewayUrl=PG, PushgatewayAuthSecretArn=SECRET)
    role = _role_of(out, function)
    assert (
        "ManagedPolicyArns" not in role["Properties"]
    )  # no AWSLambdaBasicExecutionRole (logs:* on *)
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    stmts = statements(role)
    by_action = {
        json.dumps(sorted(s["Action"]) if isinstance(s["Action"], list) else [s["Action"]]): s
        for s in stmts
    }
    assert set(by_action) == {
        '["logs:CreateLogStream", "logs:PutLogEvents"]',
        '["xray:PutTelemetryRecords", "xray:PutTraceSegments"]',
        '["secretsmanager:GetSecretValue"]',
    }
    assert all(s["Effect"] == "Allow" for s in stmts)
    # Logs: only its own log group, which has a retention period.
    assert by_action['["logs:CreateLogStream", "logs:PutLogEvents"]']["Resource"] == {
        "Fn::GetAtt": [log_group, "Arn"]
    }
    group = out["Resources"][log_group]
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}
    assert out["Resources"][function]["Properties"]["LoggingConfig"]["LogGroup"] == {
        "Ref": log_group
    }
    # Secrets: only its own secret, and only when one is configured.
    assert by_action['["secretsmanager:GetSecretValue"]']["Resource"] == {
        "Ref": "PushgatewayAuthSecretArn"
    }
    names = [p["PolicyName"] for p in role["Properties"]["Policies"]]
    assert "read-pushgateway-auth-secret" in names
    without_secret = _role_of(transformed(PushgatewayUrl=PG), function)
    assert [p["PolicyName"] for p in without_secret["Properties"]["Policies"]] == [
        n for n in names if n != "read-pushgateway-auth-secret"
    ]
    # "*" only where the service has no resource-level permissions (X-Ray).
    for s in stmts:
        if s["Resource"] == "*":
            assert all(a.startswith("xray:Put") for a in s["Action"])
    for s in stmts:
        assert all(
            "*" not in a for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
        )


def test_api_stage_throttling_and_json_access_logs(transformed: Transformed) -> None:
    out = transformed()
    stages = of_type(out, "AWS::ApiGateway::Stage")
    assert list(stages) == ["HealthzApiProdStage"]  # and no extra "Stage" stage
    props = stages["HealthzApiProdStage"]["Properties"]
    (settings,) = props["MethodSettings"]
    assert settings["ResourcePath"] == "/*" and settings["HttpMethod"] == "*"
    assert settings["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    assert settings["CachingEnabled"] is False
    assert props["TracingEnabled"] is True
    access = props["AccessLogSetting"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(access["Format"])  # one JSON object per request
    assert {
        "requestId",
        "status",
        "httpMethod",
        "resourcePath",
        "responseLatency",
        "xrayTraceId",
    } <= set(fields)
    assert all(v.startswith("$context.") for v in fields.values())
    assert out["Resources"]["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] == {
        "Ref": "LogRetentionInDays"
    }


def test_alarms_roll_the_deployment_back(transformed: Transformed) -> None:
    out = transformed()
    (group,) = of_type(out, "AWS::CodeDeploy::DeploymentGroup").values()
    props = group["Properties"]
    assert props["AlarmConfiguration"] == {
        "Enabled": True,
        "Alarms": [
            {"Name": {"Ref": "HealthzApi5xxAlarm"}},
            {"Name": {"Ref": "HealthzFunctionErrorsAlarm"}},
        ],
    }
    assert {"DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"} <= set(
        props["AutoRollbackConfiguration"]["Events"]
    )
    assert props["AutoRollbackConfiguration"]["Enabled"] is True
    assert props["DeploymentConfigName"]["Fn::Sub"][1] == {"ConfigName": "Canary10Percent5Minutes"}

    api5xx = out["Resources"]["HealthzApi5xxAlarm"]["Properties"]
    assert (api5xx["Namespace"], api5xx["MetricName"]) == ("AWS/ApiGateway", "5XXError")
    dims = {d["Name"]: d["Value"] for d in api5xx["Dimensions"]}
    api_name = out["Resources"]["HealthzApi"]["Properties"]["Name"]
    assert dims == {"ApiName": api_name, "Stage": "Prod"}
    errors = out["Resources"]["HealthzFunctionErrorsAlarm"]["Properties"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    dims = {d["Name"]: d["Value"] for d in errors["Dimensions"]}
    # The new version behind the alias, so that the old version's errors do not roll back the new.
    assert dims["Resource"] == {"Fn::Sub": "${HealthzFunction}:live"}
    version = next(iter(of_type(out, "AWS::Lambda::Version")))
    assert dims["ExecutedVersion"] == {"Fn::GetAtt": [version, "Version"]}
    for alarm in (api5xx, errors):
        assert (
            alarm["Threshold"] == 1
            and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        )
        assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(
    ("env", "deployment"), [("default", "AllAtOnce"), ("prod", "Canary10Percent5Minutes")]
)
def test_samconfig_environments_choose_the_deployment(
    transformed: Transformed, env: str, deployment: str
) -> None:
    import shlex
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = dict(
        o.split("=", 1)
        for o in shlex.split(config[env]["deploy"]["parameters"]["parameter_overrides"])
    )
    assert overrides["DeploymentType"] == deployment
    assert overrides["EnvironmentName"] == ("dev" if env == "default" else "prod")
    params = load_template()["Parameters"]
    assert set(overrides) <= set(params)
    (group,) = of_type(transformed(**overrides), "AWS::CodeDeploy::DeploymentGroup").values()
    assert group["Properties"]["DeploymentConfigName"]["Fn::Sub"][1] == {"ConfigName": deployment}


def test_janitor_runs_every_15_minutes_with_the_layer(transformed: Transformed) -> None:
    # Only with a Pushgateway (an empty PushgatewayUrl would fail every run).
    assert load_template()["Conditions"]["HasPushgateway"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PushgatewayUrl"}, ""]}]
    }
    out = transformed(PushgatewayUrl=PG)
    fn = out["Resources"]["PushgatewayJanitorFunction"]
    assert fn["Condition"] == "HasPushgateway"
    props = fn["Properties"]
    assert props["PackageType"] == "Zip"
    assert (props["Runtime"], props["Handler"]) == ("python3.13", "app.handler")
    (layer_id,) = of_type(out, "AWS::Lambda::LayerVersion")
    assert props["Layers"] == [{"Ref": layer_id}]
    assert out["Resources"][layer_id]["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    rules = of_type(out, "AWS::Events::Rule")
    (rule,) = rules.values()
    assert rule["Properties"]["ScheduleExpression"] == "rate(15 minutes)"
    assert rule["Properties"]["State"] == "ENABLED"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["PushgatewayJanitorFunction", "Arn"]}
    (invoke_config,) = of_type(out, "AWS::Lambda::EventInvokeConfig").values()
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == 1
    alarm = out["Resources"]["PushgatewayJanitorErrorsAlarm"]
    assert alarm["Condition"] == "HasPushgateway"
    for logical_id in (
        "PushgatewayJanitorRole",
        "PushgatewayJanitorLogGroup",
        "PushgatewayJanitorFunctionSweep",
    ):
        assert out["Resources"][logical_id]["Condition"] == "HasPushgateway"
    # The janitor's job is the one the health function pushes.
    healthz_job = out["Resources"]["HealthzFunction"]["Properties"]["Environment"]["Variables"][
        "PUSHGATEWAY_JOB"
    ]
    assert props["Environment"]["Variables"]["PUSHGATEWAY_JOB"] == healthz_job


def test_image_metadata_points_at_the_dockerfile() -> None:
    meta = load_template()["Resources"]["HealthzFunction"]["Metadata"]
    assert meta["DockerContext"] == "."
    assert (ROOT / meta["Dockerfile"]).is_file()


# Lambda Managed Instances (ManagedInstances=true): IDs as a deployment would pass them.
LMI = {
    "ManagedInstances": "true",
    "ManagedInstancesSubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "ManagedInstancesSecurityGroupIds": "sg-0123456789abcdef0",
}
LMI_RESOURCES = ("HealthzCapacityProvider", "HealthzCapacityProviderOperatorRole")


def test_managed_instances_config_is_on_the_function_resource() -> None:
    """localrt reads PerExecutionEnvironmentMaxConcurrency here (not in Globals)."""
    doc = load_template()
    assert "CapacityProviderConfig" not in doc["Globals"]["Function"]
    condition, on, off = doc["Resources"]["HealthzFunction"]["Properties"][
        "CapacityProviderConfig"
    ]["Fn::If"]
    assert condition == "UseManagedInstances" and off == {"Ref": "AWS::NoValue"}
    assert on == {
        "Arn": {"Fn::GetAtt": ["HealthzCapacityProvider", "Arn"]},
        "ExecutionEnvironmentMemoryGiBPerVCpu": {"Ref": "ManagedInstancesMemoryGiBPerVCpu"},
        "PerExecutionEnvironmentMaxConcurrency": {"Ref": "PerExecutionEnvironmentMaxConcurrency"},
    }
    params = doc["Parameters"]
    assert params["ManagedInstances"]["Default"] == "false"  # off by default
    assert doc["Conditions"]["UseManagedInstances"] == {
        "Fn::Equals": [{"Ref": "ManagedInstances"}, "true"]
    }
    assert params["PerExecutionEnvironmentMaxConcurrency"]["Default"] == 4  # sam local's default
    assert params["ManagedInstancesMemorySize"]["MinValue"] == 2048  # LMI's smallest function
    for name in LMI_RESOURCES:
        assert doc["Resources"][name]["Condition"] == "UseManagedInstances"


def test_sam_alone_refuses_the_conditional_capacity_provider_config() -> None:
    """Why the template declares AWS::LanguageExtensions: without it the !If reaches SAM."""
    from samtranslator.model.exceptions import (  # type: ignore[import-untyped]
        InvalidDocumentException,
    )
    from samtranslator.translator.transform import transform  # type: ignore[import-untyped]

    from tests.deploy.conftest import sam_transform

    assert sam_transform()  # with the language extensions first, it transforms
    template = load_template()
    template["Transform"] = "AWS::Serverless-2016-10-31"
    resources = template["Resources"]
    resources["HealthzFunction"]["Properties"]["ImageUri"] = FAKE_IMAGE_URI
    resources["PushgatewayJanitorFunction"]["Properties"]["CodeUri"] = "s3://artifacts/j.zip"
    resources["ObservabilityLayer"]["Properties"]["ContentUri"] = "s3://artifacts/l.zip"

    class NoPolicies:
        def load(self) -> dict[str, str]:
            return {}

    with pytest.raises(InvalidDocumentException, match="Invalid CapacityProviderConfig"):
        transform(template, {}, NoPolicies())


def test_on_demand_by_default_nothing_of_managed_instances(transformed: Transformed) -> None:
    out = transformed()
    props = out["Resources"]["HealthzFunction"]["Properties"]
    assert "CapacityProviderConfig" not in props
    assert props["LoggingConfig"]["LogFormat"] == "Text"
    assert props["MemorySize"] == 256
    # CloudFormation skips the resources of a false condition: none is created.
    lmi = {
        k: v
        for k, v in out["Resources"].items()
        if v["Type"] == "AWS::Lambda::CapacityProvider" or k in LMI_RESOURCES
    }
    assert set(lmi) == set(LMI_RESOURCES)
    assert all(v["Condition"] == "UseManagedInstances" for v in lmi.values())
    versions = of_type(out, "AWS::Lambda::Version").values()
    assert all(v["DeletionPolicy"] == "Retain" for v in versions)


def test_managed_instances_capacity_provider_and_function(transformed: Transformed) -> None:
    out = transformed(**LMI)
    (provider_id,) = of_type(out, "AWS::Lambda::CapacityProvider")
    assert provider_id == "HealthzCapacityProvider"
    provider = out["Resources"][provider_id]["Properties"]
    assert provider["VpcConfig"] == {
        "SubnetIds": {"Ref": "ManagedInstancesSubnetIds"},
        "SecurityGroupIds": {"Ref": "ManagedInstancesSecurityGroupIds"},
    }
    assert provider["InstanceRequirements"] == {"Architectures": ["x86_64"]}
    assert provider["PermissionsConfig"] == {
        "CapacityProviderOperatorRoleArn": {
            "Fn::GetAtt": ["HealthzCapacityProviderOperatorRole", "Arn"]
        }
    }
    role = out["Resources"]["HealthzCapacityProviderOperatorRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSLambdaManagedEC2ResourceOperator"}
    ]
    assert "Policies" not in role  # AWS's managed operator policy only

    fn = out["Resources"]["HealthzFunction"]["Properties"]
    assert fn["CapacityProviderConfig"] == {
        "LambdaManagedInstancesCapacityProviderConfig": {
            "CapacityProviderArn": {"Fn::GetAtt": ["HealthzCapacityProvider", "Arn"]},
            "ExecutionEnvironmentMemoryGiBPerVCpu": {"Ref": "ManagedInstancesMemoryGiBPerVCpu"},
            "PerExecutionEnvironmentMaxConcurrency": {
                "Ref": "PerExecutionEnvironmentMaxConcurrency"
            },
        }
    }
    assert fn["LoggingConfig"]["LogFormat"] == "JSON"  # the only format LMI accepts
    assert fn["MemorySize"] == {"Ref": "ManagedInstancesMemorySize"}
    assert "VpcConfig" not in fn  # the capacity provider has the VPC (SAM: mutually exclusive)
    # Same function, same alias and gradual deployment as on demand.
    (alias,) = of_type(out, "AWS::Lambda::Alias").values()
    assert alias["Properties"]["Name"] == "live"
    assert of_type(out, "AWS::CodeDeploy::DeploymentGroup")
    # SAM deletes replaced versions of LMI functions (each keeps execution environments up).
    versions = of_type(out, "AWS::Lambda::Version").values()
    assert versions and all(v["DeletionPolicy"] == "Delete" for v in versions)


def test_rules_refuse_managed_instances_without_a_network() -> None:
    (rule,) = load_template()["Rules"].values()
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ManagedInstances"}, "true"]}
    asserted = [a["Assert"] for a in rule["Assertions"]]
    assert asserted == [
        {"Fn::Not": [{"Fn::Contains": [{"Ref": "ManagedInstancesSubnetIds"}, ""]}]},
        {"Fn::Not": [{"Fn::Contains": [{"Ref": "ManagedInstancesSecurityGroupIds"}, ""]}]},
    ]


def test_samconfig_lmi_environment_turns_managed_instances_on(transformed: Transformed) -> None:
    import shlex
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    deploy = config["lmi"]["deploy"]["parameters"]
    overrides = dict(o.split("=", 1) for o in shlex.split(deploy["parameter_overrides"]))
    assert overrides["ManagedInstances"] == "true"
    assert set(overrides) <= set(load_template()["Parameters"])
    assert overrides["ManagedInstancesSubnetIds"] and overrides["ManagedInstancesSecurityGroupIds"]
    out = transformed(**overrides)
    assert "CapacityProviderConfig" in out["Resources"]["HealthzFunction"]["Properties"]
    # Every environment deploys a template with a macro (AWS::LanguageExtensions).
    for env in config.values():
        if isinstance(env, dict) and "deploy" in env:
            assert "CAPABILITY_AUTO_EXPAND" in env["deploy"]["parameters"]["capabilities"]
