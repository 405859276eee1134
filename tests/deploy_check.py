"""Deploys template.yaml as `sam deploy` would, on moto's CloudFormation: the SAM transform
(aws-sam-translator), the function's package uploaded to S3, a stack created for each
parameter set below; then checks, through the AWS APIs, the wiring a user relies on.

moto's server (`moto_server`) is started on a free loopback port and stopped at the end.
The package is a zip of the x86 binary that cargo already built, as `bootstrap` (moto
creates the function from it but does not run it); found through `cargo metadata`, so
CARGO_TARGET_DIR is honoured, and built with `cargo build` when missing.

Where moto's CloudFormation lacks a resource type or mishandles one, the test says so
below and works around it here, never in the template.

Usage: python3 tests/deploy_check.py"""
import ast
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sam_template import ROOT, load_sam, resources_of, to_cloudformation  # noqa: E402

import boto3  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
PULL_ACTIONS = {"ecr:BatchGetImage", "ecr:BatchImportUpstreamImage", "ecr:CreateRepository",
                "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"}
VPC_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
# The registry checks at start (Doctor, WARM_DOCTOR): read-only; DescribeRepositories on the
# cache prefixes beside the pull actions, the registry-level reads on *.
DOCTOR_REPOSITORY_ACTIONS = {"ecr:DescribeRepositories"}
DOCTOR_REGISTRY_ACTIONS = ["ecr:GetRegistryPolicy", "ecr:ValidatePullThroughCacheRule",
                           "ecr:DescribeRepositoryCreationTemplates"]
# What ECS runs (WarmFromEcs): the read-only list and describe actions, on *; for the ECS
# events alone, DescribeTaskDefinition (an event that leaves out the images).
ECS_LISTING_ACTIONS = ["ecs:ListClusters", "ecs:ListServices", "ecs:DescribeServices", "ecs:DescribeTaskDefinition",
                       "ecs:ListTaskDefinitionFamilies", "ecs:ListTaskDefinitions"]
ECS_EVENT_RULES = {"NewTaskDefinitionRule": ("the registration of a task definition", "ecs-register-task-definition"),
                   "PullFailureRule": ("a task that could not pull", "ecs-task-stopped-cannot-pull")}

# Resource types moto's CloudFormation skips (it logs "No Moto CloudFormation support"
# and reports the stack complete without them). The test creates those that moto has an
# API for through that API, from the resource's properties as CloudFormation would resolve
# them, and checks the others in the transformed template.
NOT_IN_MOTO_CLOUDFORMATION = {
    "AWS::CloudWatch::Alarm", "AWS::Logs::MetricFilter", "AWS::Lambda::EventInvokeConfig",
    "AWS::ECR::PullThroughCacheRule", "AWS::ECR::RepositoryCreationTemplate",
}

results = []


def check(name, condition, detail=""):
    results.append((name, bool(condition)))
    print(("ok   " if condition else "FAIL ") + name + ("" if condition or detail == "" else f": {detail}"),
          flush=True)


# --- the package -------------------------------------------------------------------------

def built_binary():
    metadata = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout)
    binary = Path(metadata["target_directory"]) / "debug" / "ecr-cache-warmer"
    if not binary.exists():
        print(f"deploy: {binary} is missing, building it", flush=True)
        subprocess.run(["cargo", "build", "--bin", "ecr-cache-warmer"], cwd=ROOT, check=True)
    return binary


def package(binary):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zip_file:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(binary, "rb") as f:
            zip_file.writestr(info, f.read(), compresslevel=1)
    return buffer.getvalue()


# --- moto's server -----------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    def __init__(self, log_path):
        self.port = free_port()
        self.log = open(log_path, "w")
        server = Path(sys.executable).with_name("moto_server")
        command = [str(server) if server.exists() else "moto_server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"deploy: moto_server stopped at start; see {log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"deploy: moto_server did not listen on port {self.port} within 60s")

    def client(self, service):
        return boto3.client(service, endpoint_url=f"http://127.0.0.1:{self.port}", region_name=REGION,
                            aws_access_key_id="test", aws_secret_access_key="test")

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


# --- deploying -----------------------------------------------------------------------------

def for_moto(cfn_template):
    """moto turns a Number parameter into an int, and then looks the int up in a
    mapping whose keys are strings (Fn::FindInMap [VisibilityTimeout, !Ref Timeout, ...]
    fails with KeyError and the stack with "Fn::GetAtt references undefined resource").
    CloudFormation gives Ref of a Number parameter as a string: make those parameters
    Strings for moto."""
    template = json.loads(json.dumps(cfn_template))
    for name, spec in template["Parameters"].items():
        if spec["Type"] == "Number":
            spec["Type"] = "String"
            if "Default" in spec:
                spec["Default"] = str(spec["Default"])
            spec.pop("MinValue", None)
            spec.pop("MaxValue", None)
            if "AllowedValues" in spec:
                spec["AllowedValues"] = [str(v) for v in spec["AllowedValues"]]
    return template


def deploy(moto, name, parameters, code_uri):
    sam = load_sam()
    cfn_template = to_cloudformation(sam, parameters, code_uri=code_uri, region=REGION)
    cloudformation = moto.client("cloudformation")
    cloudformation.create_stack(
        StackName=name, TemplateBody=json.dumps(for_moto(cfn_template)),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"])
    deadline = time.monotonic() + 120
    while True:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    check(f"{name}: the stack reaches CREATE_COMPLETE", stack["StackStatus"] == "CREATE_COMPLETE",
          f"{stack['StackStatus']} {stack.get('StackStatusReason', '')}")
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cloudformation.describe_stack_resources(StackName=name)["StackResources"]
                if r.get("LogicalResourceId") and r.get("PhysicalResourceId")}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return cfn_template, physical, outputs


def attributes(moto, template, physical):
    """Ref and Fn::GetAtt values of the created resources, for resolving the properties of
    the resources moto's CloudFormation skips."""
    created = dict(physical)
    sqs, lambda_, iam = moto.client("sqs"), moto.client("lambda"), moto.client("iam")
    for logical, resource in template["Resources"].items():
        if logical not in physical:
            continue
        kind = resource["Type"]
        if kind == "AWS::SQS::Queue":
            url = physical[logical]
            created[f"{logical}.QueueName"] = url.rsplit("/", 1)[-1]
            created[f"{logical}.Arn"] = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            created[f"{logical}.QueueUrl"] = url
        elif kind == "AWS::Lambda::Function":
            created[f"{logical}.Arn"] = lambda_.get_function_configuration(
                FunctionName=physical[logical])["FunctionArn"]
        elif kind == "AWS::IAM::Role":
            created[f"{logical}.Arn"] = iam.get_role(RoleName=physical[logical])["Role"]["Arn"]
        elif kind == "AWS::Logs::LogGroup":
            created[f"{logical}.Arn"] = (f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{physical[logical]}:*")
    return created


def create_skipped_resources(moto, resources, stack):
    """What moto's CloudFormation skipped, created through moto's APIs. Returns the logical
    ids of those created, and of those left to the template checks."""
    cloudwatch, logs, lambda_ = moto.client("cloudwatch"), moto.client("logs"), moto.client("lambda")
    for logical, resource in resources.items():
        kind, props = resource["Type"], resource["Properties"]
        if kind == "AWS::CloudWatch::Alarm":
            alarm = {k: v for k, v in props.items() if k not in ("Metrics",)}
            alarm.setdefault("AlarmName", f"{stack}-{logical}")
            cloudwatch.put_metric_alarm(**alarm)
        elif kind == "AWS::Logs::MetricFilter":
            logs.put_metric_filter(logGroupName=props["LogGroupName"],
                                   filterName=props.get("FilterName", f"{stack}-{logical}"),
                                   filterPattern=props["FilterPattern"],
                                   metricTransformations=[
                                       {k[0].lower() + k[1:]: v for k, v in t.items()}
                                       for t in props["MetricTransformations"]])
        elif kind == "AWS::Lambda::EventInvokeConfig":
            lambda_.put_function_event_invoke_config(
                FunctionName=props["FunctionName"], Qualifier=props.get("Qualifier", "$LATEST"),
                **{k: v for k, v in props.items() if k not in ("FunctionName", "Qualifier")})


# --- the checks ----------------------------------------------------------------------------

def statements_of(document):
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            # moto's CloudFormation stores an inline policy of AWS::IAM::Role as the
            # Python text of the document (single quotes), and GetRolePolicy returns that.
            document = ast.literal_eval(document)
    return as_list(document["Statement"])


def as_list(value):
    # moto's CloudFormation leaves Ref AWS::NoValue in a list as null, where CloudFormation
    # drops the element (Fn::If [Condition, X, !Ref AWS::NoValue] in a list of ARNs).
    return [v for v in value if v is not None] if isinstance(value, list) else [value]


def check_stack(moto, name, parameters, expect):
    template, physical, outputs = deploy(moto, name, parameters, expect["code_uri"])
    created = attributes(moto, template, physical)
    resources = resources_of(template, parameters, created,
                             {"AWS::StackName": name, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT})
    skipped = {k: r for k, r in resources.items() if r["Type"] in NOT_IN_MOTO_CLOUDFORMATION}
    create_skipped_resources(moto, skipped, name)
    lambda_, events, sqs = moto.client("lambda"), moto.client("events"), moto.client("sqs")
    iam, logs, cloudwatch = moto.client("iam"), moto.client("logs"), moto.client("cloudwatch")

    function_name = physical["WarmerFunction"]
    function = lambda_.get_function_configuration(FunctionName=function_name)
    function_arn = function["FunctionArn"]
    queue_url, dlq_url = physical["WarmQueue"], physical["WarmDeadLetterQueue"]
    queue_arn, dlq_arn = created["WarmQueue.Arn"], created["WarmDeadLetterQueue.Arn"]
    failed_url, failed_arn = physical["FailedInvocationQueue"], created["FailedInvocationQueue.Arn"]

    # The function
    # moto's CloudFormation ignores Architectures (the function comes out x86_64): the
    # architecture is checked in the transformed template.
    check(f"{name}: the function runs bootstrap on provided.al2023, arm64",
          (function["Runtime"], function["Handler"]) == ("provided.al2023", "bootstrap")
          and resources["WarmerFunction"]["Properties"]["Architectures"] == ["arm64"],
          (function["Runtime"], function["Handler"], resources["WarmerFunction"]["Properties"]["Architectures"]))
    check(f"{name}: the function's memory and timeout are the parameters",
          (function["MemorySize"], function["Timeout"]) == (expect["memory"], expect["timeout"]),
          (function["MemorySize"], function["Timeout"]))
    env = {k: str(v) for k, v in function.get("Environment", {}).get("Variables", {}).items()}
    wanted = {"WARM_FROM_ECS": "false", "WARM_ECS_CLUSTERS": "", "WARM_UPSTREAM_ENDPOINTS": "",
              "WARM_AWS_ENDPOINT_URL": "",
              **expect["env"],
              "WARM_QUEUE_URL": queue_url, "WARM_IMAGES_S3_URI": expect["images_s3_uri"]}
    check(f"{name}: the function's environment carries every setting, and the queue's URL",
          env == wanted, f"got {env}, expected {wanted}")
    check(f"{name}: the function runs with the stack's role",
          function["Role"] == created["WarmerRole.Arn"], function["Role"])
    vpc = function.get("VpcConfig") or {}
    check(f"{name}: " + ("the function is in the given subnets and security groups" if expect["vpc"]
                         else "the function is in no VPC"),
          (sorted(vpc.get("SubnetIds", [])), sorted(vpc.get("SecurityGroupIds", [])))
          == (sorted(expect["vpc"].get("SubnetIds", [])), sorted(expect["vpc"].get("SecurityGroupIds", []))),
          vpc)
    outputs_wanted = {"FunctionName": function_name, "QueueUrl": queue_url, "DeadLetterQueueUrl": dlq_url,
                      "FailedInvocationQueueUrl": failed_url}
    check(f"{name}: the outputs name the function and the queues",
          {k: outputs.get(k) for k in outputs_wanted} == outputs_wanted, outputs)

    # The schedule
    rule_name = physical["WarmerFunctionSchedule"]
    rule = events.describe_rule(Name=rule_name)
    targets = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    check(f"{name}: the schedule runs {expect['schedule']} and targets the function",
          rule["ScheduleExpression"] == expect["schedule"] and rule["State"] == "ENABLED"
          and [t["Arn"] for t in targets] == [function_arn], (rule, targets))
    # An asynchronous invocation (the schedule's) that still fails after Lambda's retries
    # goes to the failed-invocation queue (created by the test: see NOT_IN_MOTO_CLOUDFORMATION).
    invoke_config = lambda_.get_function_event_invoke_config(FunctionName=function_name)
    check(f"{name}: a failed scheduled invocation is recorded in the failed-invocation queue, after 2 retries",
          invoke_config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination") == failed_arn
          and invoke_config.get("MaximumRetryAttempts") == 2, invoke_config)
    policy = json.loads(lambda_.get_policy(FunctionName=function_name)["Policy"])
    check(f"{name}: EventBridge may invoke the function for that rule only",
          any(s["Principal"] == {"Service": "events.amazonaws.com"} and s["Action"] == "lambda:InvokeFunction"
              and s.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn") == rule["Arn"]
              for s in policy["Statement"]), policy)

    # ECS events (WarmOnNewTaskDefinition, WarmOnPullFailure): a rule each, which invokes
    # the function and may, by the function's policy.
    function_policy = json.dumps(lambda_.get_policy(FunctionName=function_name)["Policy"]) \
        if expect.get("ecs_rules") else ""
    for logical, (what, sample) in ECS_EVENT_RULES.items():
        if logical not in expect.get("ecs_rules", []):
            check(f"{name}: no rule for {what}", logical not in physical, physical.get(logical))
            continue
        ecs_rule = events.describe_rule(Name=physical[logical])
        ecs_targets = events.list_targets_by_rule(Rule=physical[logical])["Targets"]
        event = json.loads((ROOT / "events" / f"{sample}.json").read_text())
        pattern = json.loads(ecs_rule.get("EventPattern", "{}"))
        check(f"{name}: a rule on {what} (source aws.ecs, detail-type {event['detail-type']}) invokes the function",
              pattern.get("source") == ["aws.ecs"] and pattern.get("detail-type") == [event["detail-type"]]
              and ecs_rule["State"] == "ENABLED" and [t["Arn"] for t in ecs_targets] == [function_arn],
              (ecs_rule, ecs_targets))
        check(f"{name}: the function's policy lets that rule invoke it",
              ecs_rule["Arn"] in function_policy and "events.amazonaws.com" in function_policy, function_policy)

    # The queue
    mappings = lambda_.list_event_source_mappings(FunctionName=function_name)["EventSourceMappings"]
    check(f"{name}: one event source mapping reads the queue, 10 messages at a time",
          [(m["EventSourceArn"], m["BatchSize"]) for m in mappings] == [(queue_arn, 10)], mappings)
    check(f"{name}: the event source mapping reports batch item failures (ReportBatchItemFailures)",
          [m.get("FunctionResponseTypes") for m in mappings] == [["ReportBatchItemFailures"]], mappings)
    check(f"{name}: at most {expect['queue_concurrency']} invocations read the queue at once",
          [int(m.get("ScalingConfig", {}).get("MaximumConcurrency", 0)) for m in mappings]
          == [expect["queue_concurrency"]], mappings)
    queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(queue.get("RedrivePolicy", "{}"))
    check(f"{name}: the queue sends a message to the dead-letter queue after {expect['max_receives']} receives",
          redrive.get("deadLetterTargetArn") == dlq_arn
          and int(redrive.get("maxReceiveCount", 0)) == expect["max_receives"], redrive)
    check(f"{name}: the queue's visibility timeout is six times the function's",
          int(queue["VisibilityTimeout"]) == 6 * expect["timeout"], queue["VisibilityTimeout"])
    dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    check(f"{name}: the dead-letter queue keeps messages 14 days",
          int(dlq["MessageRetentionPeriod"]) == 14 * 24 * 3600, dlq)

    # The role
    role_name = physical["WarmerRole"]
    inline = {p: statements_of(iam.get_role_policy(RoleName=role_name, PolicyName=p)["PolicyDocument"])
              for p in iam.list_role_policies(RoleName=role_name)["PolicyNames"]}
    statements = [s for policy in inline.values() for s in policy]
    pull = [s for s in statements if PULL_ACTIONS & set(as_list(s["Action"]))]
    arns = [f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{p}" for p in expect["repositories"]]
    doctor = expect["env"]["WARM_DOCTOR"] == "true"
    check(f"{name}: the pull actions are granted on {', '.join(expect['repositories'])} only"
          + (", with DescribeRepositories for the registry checks" if doctor else ""),
          len(pull) == 1
          and set(as_list(pull[0]["Action"])) == PULL_ACTIONS | (DOCTOR_REPOSITORY_ACTIONS if doctor else set())
          and sorted(as_list(pull[0]["Resource"])) == sorted(arns), pull)
    send = [s for s in statements if "sqs:SendMessage" in as_list(s["Action"])]
    check(f"{name}: the function may send (SendMessage, SendMessageBatch) to its own queue and the failed-invocation queue only",
          sorted(r for s in send for r in as_list(s["Resource"])) == sorted([queue_arn, failed_arn]), send)
    reads = [s for s in statements if "s3:GetObject" in as_list(s["Action"])]
    bucket_and_key = expect["images_s3_uri"].removeprefix("s3://")
    check(f"{name}: " + (f"the function may read {expect['images_s3_uri']} only" if bucket_and_key
                         else "the function may read no S3 object"),
          [as_list(s["Resource"]) for s in reads] == ([[f"arn:aws:s3:::{bucket_and_key}"]] if bucket_and_key else []),
          reads)
    secrets = [s for s in statements if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    check(f"{name}: the function may read the pull-through cache's secrets (ecr-pullthroughcache/*) only",
          [as_list(s["Resource"]) for s in secrets]
          == [[f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/*"]], secrets)
    read = [s for s in statements if "sqs:ReceiveMessage" in as_list(s["Action"])]
    check(f"{name}: the function may receive and delete messages of its own queue only",
          [as_list(s["Resource"]) for s in read] == [[queue_arn]]
          and {"sqs:DeleteMessage", "sqs:GetQueueAttributes"} <= set(as_list(read[0]["Action"])), read)
    everywhere = [a for s in statements if "*" in as_list(s["Resource"]) for a in as_list(s["Action"])]
    on_everything = ["ecr:DescribePullThroughCacheRules", "ecr:DescribeRegistry"] + (
        DOCTOR_REGISTRY_ACTIONS if doctor else []) + expect.get("ecs_actions", [])
    check(f"{name}: only {', '.join(on_everything)} are granted on *", everywhere == on_everything, everywhere)
    # moto's CloudFormation ignores ManagedPolicyArns of an AWS::IAM::Role (nothing is
    # attached): what CloudFormation would attach is read from the resolved template.
    attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]]
    attached = attached or resources["WarmerRole"]["Properties"].get("ManagedPolicyArns", [])
    check(f"{name}: " + ("the VPC access policy is attached once" if expect["vpc"] else "no managed policy is attached"),
          attached == ([VPC_POLICY] if expect["vpc"] else []), attached)

    # Logs and dashboard
    groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}-warmer")["logGroups"]
    check(f"{name}: the log group /aws/lambda/{name}-warmer keeps logs {expect['retention']} days",
          [(g["logGroupName"], int(g.get("retentionInDays", 0))) for g in groups]
          == [(f"/aws/lambda/{name}-warmer", expect["retention"])], groups)
    check(f"{name}: the function logs to that group, in JSON",
          function.get("LoggingConfig", {}).get("LogGroup", f"/aws/lambda/{name}-warmer") == f"/aws/lambda/{name}-warmer"
          and resources["WarmerFunction"]["Properties"]["LoggingConfig"]
          == {"LogGroup": f"/aws/lambda/{name}-warmer", "LogFormat": "JSON"},
          function.get("LoggingConfig"))
    dashboard = cloudwatch.get_dashboard(DashboardName=f"{name}-ecr-cache-warmer")
    body = json.dumps(json.loads(dashboard["DashboardBody"]))
    check(f"{name}: the dashboard shows the namespace {expect['namespace']} and both queues",
          all(f'"{v}"' in body for v in (expect["namespace"], created["WarmQueue.QueueName"],
                                         created["WarmDeadLetterQueue.QueueName"])), body[:200])

    # Alarms (created by the test: see NOT_IN_MOTO_CLOUDFORMATION)
    alarms = {a["AlarmName"].removeprefix(f"{name}-"): a
              for a in cloudwatch.describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"]}
    function_dimension = [{"Name": "FunctionName", "Value": function_name}]
    queue_dimension = lambda logical: [{"Name": "QueueName", "Value": created[f"{logical}.QueueName"]}]  # noqa: E731
    wanted_alarms = {
        "FailedImagesAlarm": ("images that failed to warm", expect["namespace"], "Failed", None),
        "ErrorsAlarm": ("function errors", "AWS/Lambda", "Errors", function_dimension),
        "ThrottlesAlarm": ("throttled invocations", "AWS/Lambda", "Throttles", function_dimension),
        "TimeoutsAlarm": ("invocations that timed out", expect["namespace"], "Timeouts", None),
        "InitFailuresAlarm": ("starts that failed", expect["namespace"], "InitFailures", None),
        "DeadLetterAlarm": ("messages in the dead-letter queue", "AWS/SQS", "ApproximateNumberOfMessagesVisible",
                            queue_dimension("WarmDeadLetterQueue")),
        "FailedInvocationsAlarm": ("failed scheduled invocations", "AWS/SQS",
                                   "ApproximateNumberOfMessagesVisible", queue_dimension("FailedInvocationQueue")),
    }
    for logical, (what, namespace, metric, dimensions) in wanted_alarms.items():
        alarm = alarms.get(logical, {})
        check(f"{name}: an alarm on {what} ({namespace} {metric}"
              + (f" of {dimensions[0]['Value']})" if dimensions else ")"),
              (alarm.get("Namespace"), alarm.get("MetricName"), alarm.get("Dimensions") or None)
              == (namespace, metric, dimensions) and alarm.get("Threshold") == 0
              and alarm.get("ComparisonOperator") == "GreaterThanThreshold", alarm)
    # The log's metric filters feed Timeouts and InitFailures (created by the test: see
    # NOT_IN_MOTO_CLOUDFORMATION).
    log_group = f"/aws/lambda/{name}-warmer"
    filters = logs.describe_metric_filters(logGroupName=log_group)["metricFilters"]
    fed = {}
    for f in filters:
        for t in f["metricTransformations"]:
            fed.setdefault((t["metricNamespace"], t["metricName"]), []).append(f["filterPattern"])
    check(f"{name}: the log's metric filters count timeouts (Lambda's JSON report and the text line)",
          sorted(fed.get((expect["namespace"], "Timeouts"), []))
          == sorted(['{ $.type = "platform.report" && $.record.status = "timeout" }', '"Task timed out"']), fed)
    check(f"{name}: the log's metric filters count failed starts (the function's line and Lambda's init report)",
          sorted(fed.get((expect["namespace"], "InitFailures"), []))
          == sorted(['"the function cannot start"',
                     '{ $.type = "platform.initReport" && $.record.status != "success" }']), fed)
    actions = {n: a.get("AlarmActions", []) for n, a in alarms.items()}
    check(f"{name}: " + ("every alarm notifies the topic" if expect["topic"] else "no alarm notifies anything"),
          len(actions) == len(wanted_alarms)
          and all(v == ([expect["topic"]] if expect["topic"] else []) for v in actions.values()), actions)

    # Pull-through cache rules and their repository creation templates (not in moto at all:
    # checked as CloudFormation would create them).
    rules = {r["Properties"]["EcrRepositoryPrefix"]: r["Properties"]["UpstreamRegistryUrl"]
             for r in resources.values() if r["Type"] == "AWS::ECR::PullThroughCacheRule"}
    check(f"{name}: the pull-through cache rules created are {expect['rules'] or 'none'}",
          rules == expect["rules"], rules)
    creation = {r["Properties"]["Prefix"]: r["Properties"] for r in resources.values()
                if r["Type"] == "AWS::ECR::RepositoryCreationTemplate"}
    encryption = ({"EncryptionType": "KMS", "KmsKey": expect["kms_key"]} if expect["kms_key"]
                  else {"EncryptionType": "AES256"})
    check(f"{name}: each rule has a creation template, mutable tags, encrypted with "
          + ("the given key" if expect["kms_key"] else "AES256"),
          set(creation) == set(rules) and all(
              c["AppliedFor"] == ["PULL_THROUGH_CACHE"] and c["ImageTagMutability"] == "MUTABLE"
              and c["EncryptionConfiguration"] == encryption for c in creation.values()), creation)
    # A template that sets a KMS key needs a role that ECR assumes: created by the stack,
    # allowed what ECR's guide lists, on the rules' repositories and on that key only.
    kms_templates = bool(expect["kms_key"] and rules)
    check(f"{name}: " + ("the creation templates name the stack's repository creation role" if kms_templates
                         else "no repository creation role"),
          ("RepositoryCreationRole" in physical) == kms_templates and all(
              c.get("CustomRoleArn") == (created.get("RepositoryCreationRole.Arn") if kms_templates else None)
              for c in creation.values()), creation)
    if kms_templates:
        creation_role = iam.get_role(RoleName=physical["RepositoryCreationRole"])["Role"]
        trust = creation_role["AssumeRolePolicyDocument"]
        trust = statements_of(trust if isinstance(trust, (str, dict)) else dict(trust))
        check(f"{name}: only ECR may assume the repository creation role",
              [(s["Effect"], s["Principal"], s["Action"]) for s in trust]
              == [("Allow", {"Service": "ecr.amazonaws.com"}, "sts:AssumeRole")], trust)
        granted = {(a, r) for p in iam.list_role_policies(RoleName=physical["RepositoryCreationRole"])["PolicyNames"]
                   for s in statements_of(iam.get_role_policy(RoleName=physical["RepositoryCreationRole"],
                                                              PolicyName=p)["PolicyDocument"])
                   for a in as_list(s["Action"]) for r in as_list(s["Resource"])}
        repositories = [f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{prefix}/*" for prefix in rules]
        wanted = ({(a, r) for a in ("ecr:CreateRepository", "ecr:ReplicateImage", "ecr:TagResource")
                   for r in repositories}
                  | {(a, expect["kms_key"]) for a in ("kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey")})
        check(f"{name}: the repository creation role may create, replicate and tag the rules' repositories "
              "and use the given key, nothing else", granted == wanted, sorted(granted ^ wanted))


def main():
    # Stopped from outside, still stop moto's server (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    binary = built_binary()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"deploy-check-moto-{os.getpid()}.log"
    moto = MotoServer(log_path)
    ok = False
    try:
        s3 = moto.client("s3")
        s3.create_bucket(Bucket="ecr-cache-warmer-package")
        s3.put_object(Bucket="ecr-cache-warmer-package", Key="bootstrap.zip", Body=package(binary))
        code_uri = "s3://ecr-cache-warmer-package/bootstrap.zip"

        defaults = {p: str(s.get("Default", "")) for p, s in load_sam()["Parameters"].items()}
        check_stack(moto, "warmer-defaults", {}, {
            "code_uri": code_uri, "memory": 256, "timeout": 300, "schedule": "rate(12 hours)",
            "retention": 30, "namespace": "EcrCacheWarmer", "vpc": {}, "topic": None, "rules": {},
            "kms_key": None, "queue_concurrency": 5, "max_receives": 5, "images_s3_uri": "",
            "repositories": [f"{p}/*" for p in defaults["CachePrefixes"].split(",")],
            "env": {"WARM_IMAGES": "", "WARM_RULES": "", "WARM_CONCURRENCY": "16",
                    "WARM_FANOUT_THRESHOLD": "500", "WARM_MESSAGE_IMAGES": "50",
                    "METRICS_NAMESPACE": "EcrCacheWarmer", "WARM_MAX_TPS": "", "WARM_PLATFORMS": "",
                    "WARM_LAYERS": "verify", "WARM_LAYER_WAIT": "2m", "WARM_RECHECK_DELAY": "60s",
                    "WARM_RECHECK_ATTEMPTS": "8", "WARM_DIGEST_SEARCH": "50",
                    "WARM_PULL_RESERVE": "10", "WARM_DOCTOR": "true"},
        })

        ec2, kms, sns = moto.client("ec2"), moto.client("kms"), moto.client("sns")
        vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.20.{i}.0/24",
                                     AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
                   for i, zone in ((1, "a"), (2, "b"))]
        group = ec2.create_security_group(GroupName="warmer", Description="warmer", VpcId=vpc_id)["GroupId"]
        key = kms.create_key(Description="cache repositories")["KeyMetadata"]["Arn"]
        topic = sns.create_topic(Name="warmer-alarms")["TopicArn"]
        full = {
            "Images": "nginx:1.27,quay.io/prometheus/node-exporter:v1.8.2",
            "Rules": "docker-hub=registry-1.docker.io,quay=quay.io",
            "CachePrefixes": "docker-hub,ecr-public,quay,k8s,team/cache",
            "ScheduleExpression": "cron(0 3 * * ? *)",
            "MemorySize": "512", "Timeout": "900", "Concurrency": "8", "MaxTps": "20",
            "FanoutThreshold": "200", "MessageImages": "25", "LogRetentionDays": "7",
            "MetricsNamespace": "Warm/Test", "Platforms": "linux/amd64,linux/arm64/v8",
            "Layers": "request", "LayerWait": "90s", "RecheckDelay": "15m", "RecheckAttempts": "3",
            "SubnetIds": ",".join(subnets), "SecurityGroupIds": group, "AlarmTopicArn": topic,
            "CreateEcrPublicRule": "true", "CreateQuayRule": "true", "CreateK8sRule": "true",
            "CacheKmsKeyArn": key, "QueueConcurrency": "20", "MaxReceiveCount": "8",
            "ImagesS3Uri": "s3://warmer-lists/lists/images.txt", "Doctor": "false",
            "UpstreamEndpoints": "registry-1.docker.io=https://mirror.example.com",
        }
        check_stack(moto, "warmer-full", full, {
            "code_uri": code_uri, "memory": 512, "timeout": 900, "schedule": "cron(0 3 * * ? *)",
            "retention": 7, "namespace": "Warm/Test", "vpc": {"SubnetIds": subnets, "SecurityGroupIds": [group]},
            "topic": topic, "kms_key": key, "queue_concurrency": 20, "max_receives": 8,
            "images_s3_uri": "s3://warmer-lists/lists/images.txt",
            "rules": {"ecr-public": "public.ecr.aws", "quay": "quay.io", "k8s": "registry.k8s.io"},
            "repositories": ["docker-hub/*", "ecr-public/*", "quay/*", "k8s/*", "team/cache/*"],
            "env": {"WARM_IMAGES": full["Images"], "WARM_RULES": full["Rules"], "WARM_CONCURRENCY": "8",
                    "WARM_FANOUT_THRESHOLD": "200", "WARM_MESSAGE_IMAGES": "25",
                    "METRICS_NAMESPACE": "Warm/Test", "WARM_MAX_TPS": "20",
                    "WARM_PLATFORMS": "linux/amd64,linux/arm64/v8", "WARM_LAYERS": "request",
                    "WARM_LAYER_WAIT": "90s", "WARM_RECHECK_DELAY": "15m", "WARM_RECHECK_ATTEMPTS": "3",
                    "WARM_DIGEST_SEARCH": "50", "WARM_PULL_RESERVE": "10",
                    "WARM_DOCTOR": "false",
                    "WARM_UPSTREAM_ENDPOINTS": "registry-1.docker.io=https://mirror.example.com"},
        })

        # A rule that caches at the top of the registry (ROOT) needs every repository. A KMS
        # key without a rule created here: no repository creation role either.
        check_stack(moto, "warmer-root", {"CachePrefixes": "docker-hub,ROOT", "CacheKmsKeyArn": key}, {
            "code_uri": code_uri, "memory": 256, "timeout": 300, "schedule": "rate(12 hours)",
            "retention": 30, "namespace": "EcrCacheWarmer", "vpc": {}, "topic": None, "rules": {},
            "kms_key": key, "queue_concurrency": 5, "max_receives": 5, "images_s3_uri": "", "repositories": ["*"],
            "env": {"WARM_IMAGES": "", "WARM_RULES": "", "WARM_CONCURRENCY": "16",
                    "WARM_FANOUT_THRESHOLD": "500", "WARM_MESSAGE_IMAGES": "50",
                    "METRICS_NAMESPACE": "EcrCacheWarmer", "WARM_MAX_TPS": "", "WARM_PLATFORMS": "",
                    "WARM_LAYERS": "verify", "WARM_LAYER_WAIT": "2m", "WARM_RECHECK_DELAY": "60s",
                    "WARM_RECHECK_ATTEMPTS": "8", "WARM_DIGEST_SEARCH": "50",
                    "WARM_PULL_RESERVE": "10", "WARM_DOCTOR": "true"},
        })
        # What ECS runs, and both ECS events.
        check_stack(moto, "warmer-ecs", {"WarmFromEcs": "families", "EcsClusters": "prod,staging",
                                         "WarmOnNewTaskDefinition": "true", "WarmOnPullFailure": "true"}, {
            "code_uri": code_uri, "memory": 256, "timeout": 300, "schedule": "rate(12 hours)",
            "retention": 30, "namespace": "EcrCacheWarmer", "vpc": {}, "topic": None, "rules": {},
            "kms_key": None, "queue_concurrency": 5, "max_receives": 5, "images_s3_uri": "",
            "repositories": [f"{p}/*" for p in defaults["CachePrefixes"].split(",")],
            "ecs_actions": ECS_LISTING_ACTIONS, "ecs_rules": list(ECS_EVENT_RULES),
            "env": {"WARM_IMAGES": "", "WARM_RULES": "", "WARM_CONCURRENCY": "16",
                    "WARM_FANOUT_THRESHOLD": "500", "WARM_MESSAGE_IMAGES": "50",
                    "METRICS_NAMESPACE": "EcrCacheWarmer", "WARM_MAX_TPS": "", "WARM_PLATFORMS": "",
                    "WARM_LAYERS": "verify", "WARM_LAYER_WAIT": "2m", "WARM_RECHECK_DELAY": "60s",
                    "WARM_RECHECK_ATTEMPTS": "8", "WARM_DIGEST_SEARCH": "50",
                    "WARM_PULL_RESERVE": "10", "WARM_DOCTOR": "true",
                    "WARM_FROM_ECS": "families", "WARM_ECS_CLUSTERS": "prod,staging"},
        })
        ok = True
    finally:
        moto.stop()
        if not ok:
            print(f"deploy: moto's log: {log_path}", file=sys.stderr)
        elif log_path.exists():
            log_path.unlink()

    failed = sum(1 for _, good in results if not good)
    print(f"deploy: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
