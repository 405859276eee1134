"""Checks of template.yaml beyond what cfn-lint knows: the promises the README makes, and
what CloudFormation refuses although a linter may let it pass. Usage:
python3 tests/template_check.py [TEMPLATE]  (default: template.yaml)"""
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sam_template import PSEUDO, ROOT, TEMPLATE, load_sam, resources_of, to_cloudformation  # noqa: E402

path = Path(sys.argv[1]) if len(sys.argv) > 1 else TEMPLATE
template = load_sam(path)
resources = template["Resources"]
parameters = template["Parameters"]
function = resources["WarmerFunction"]
props = function["Properties"]
results = []


def check(name, condition):
    results.append((name, bool(condition)))


def walk(node, key=None):
    """Every (key, argument) pair of every mapping in the template."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from walk(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


check("on provided.al2023, built by cargo-lambda, for the Architecture parameter's processor: arm64 unless asked",
      props["Runtime"] == "provided.al2023" and props["Architectures"] == [{"Ref": "Architecture"}]
      and parameters["Architecture"].get("Default") == "arm64"
      and parameters["Architecture"].get("AllowedValues") == ["arm64", "x86_64"]
      and function["Metadata"]["BuildMethod"] == "rust-cargolambda")

# CloudFormation takes no function in the delimiter of Fn::Join or Fn::Split: the stack
# fails to create although the template validates.
delimiters = [(k, v[0]) for k, v in walk(template) if k in ("Fn::Join", "Fn::Split")]
check("every Fn::Join and Fn::Split delimiter is a literal string",
      delimiters and all(isinstance(d, str) for _, d in delimiters))

visibility = template["Mappings"]["VisibilityTimeout"]
timeouts = parameters["Timeout"]["AllowedValues"]
check("a visibility timeout of six times every allowed function timeout",
      all(int(visibility[str(t)]["Seconds"]) >= 6 * int(t) for t in timeouts))

queue = resources["WarmQueue"]["Properties"]
receives = parameters.get("MaxReceiveCount", {})
check("the queue redrives to the dead-letter queue after MaxReceiveCount receives, at least 5 (AWS's advice for a Lambda event source)",
      queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
      and int(receives.get("Default", 0)) >= 5 and int(receives.get("MinValue", 0)) >= 5
      and int(receives.get("MaxValue", 0)) <= 1000)

events = props["Events"]
check("the SQS event source reports batch item failures",
      events["Queue"]["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"])
check("a schedule whose expression is a parameter, every 12 hours by default",
      events["Schedule"]["Properties"]["Schedule"] == {"Ref": "ScheduleExpression"}
      and parameters["ScheduleExpression"]["Default"] == "rate(12 hours)")

env = props["Environment"]["Variables"]
settings = {"WARM_IMAGES": "Images", "WARM_RULES": "Rules", "WARM_CONCURRENCY": "Concurrency",
            "WARM_FANOUT_THRESHOLD": "FanoutThreshold", "WARM_MESSAGE_IMAGES": "MessageImages",
            "METRICS_NAMESPACE": "MetricsNamespace", "WARM_MAX_TPS": "MaxTps", "WARM_IMAGES_S3_URI": "ImagesS3Uri",
            "WARM_PLATFORMS": "Platforms", "WARM_LAYERS": "Layers", "WARM_LAYER_WAIT": "LayerWait",
            "WARM_RECHECK_DELAY": "RecheckDelay", "WARM_RECHECK_ATTEMPTS": "RecheckAttempts",
            "WARM_DIGEST_SEARCH": "DigestSearch", "WARM_PULL_RESERVE": "PullReserve",
            "WARM_DOCTOR": "Doctor", "WARM_FROM_ECS": "WarmFromEcs",
            "WARM_UPSTREAM_ENDPOINTS": "UpstreamEndpoints"}
check("the function gets every setting from its parameter, the queue's URL, the ECS clusters with WarmFromEcs only, "
      "and the variables of a local run (RUST_LOG only when LogFilter is given, WARM_AWS_ENDPOINT_URL empty)",
      env == {**{var: {"Ref": p} for var, p in settings.items()}, "WARM_QUEUE_URL": {"Ref": "WarmQueue"},
              "WARM_ECS_CLUSTERS": {"Fn::If": ["WarmsFromEcs", {"Ref": "EcsClusters"}, ""]},
              "RUST_LOG": {"Fn::If": ["HasLogFilter", {"Ref": "LogFilter"}, {"Ref": "AWS::NoValue"}]},
              "WARM_AWS_ENDPOINT_URL": ""})
# An empty AWS_ENDPOINT_URL stops the SDK (and so the function) at start: the template must
# never set it; the function's own WARM_AWS_ENDPOINT_URL, empty, means unset.
check("the template never sets the SDK's AWS_ENDPOINT_URL", not any(k == "AWS_ENDPOINT_URL" for k, _ in walk(template)))
check("what ECS runs is warmed only when asked (WarmFromEcs, WarmOnNewTaskDefinition, WarmOnPullFailure default to false)",
      [parameters.get(p, {}).get("Default") for p in ("WarmFromEcs", "WarmOnNewTaskDefinition", "WarmOnPullFailure")]
      == ["false"] * 3 and parameters["WarmFromEcs"].get("AllowedValues") == ["false", "true", "families"])
check("the settings' defaults: every platform, layers verified, 2m layer wait, next tries after 60s, 8 of them, no TPS cap",
      tuple(str(parameters.get(p, {}).get("Default")) for p in
            ("Platforms", "Layers", "LayerWait", "RecheckDelay", "RecheckAttempts", "MaxTps"))
      == ("", "verify", "2m", "60s", "8", ""))
check("the registry checks at start (Doctor) are on by default, true or false",
      parameters.get("Doctor", {}).get("Default") == "true"
      and parameters["Doctor"].get("AllowedValues") == ["true", "false"])
check("function name, queue URL, dead-letter and failed-invocation queue URLs are outputs",
      {"FunctionName", "QueueUrl", "DeadLetterQueueUrl", "FailedInvocationQueueUrl"} <= set(template["Outputs"]))

queue_event = events["Queue"]["Properties"]
check("at most QueueConcurrency (default 5) invocations read the queue at once",
      queue_event.get("ScalingConfig") == {"MaximumConcurrency": {"Ref": "QueueConcurrency"}}
      and int(parameters.get("QueueConcurrency", {}).get("Default", 0)) == 5)
destination = props.get("EventInvokeConfig", {}).get("DestinationConfig", {}).get("OnFailure", {})
check("a scheduled (asynchronous) invocation that fails for good goes to the failed-invocation queue",
      destination == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["FailedInvocationQueue", "Arn"]}})

# Every failure mode has an alarm, and every alarm notifies the topic when one is given.
alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
function_dimension = [{"Name": "FunctionName", "Value": {"Ref": "WarmerFunction"}}]
wanted_alarms = {
    "ErrorsAlarm": ("AWS/Lambda", "Errors", function_dimension),
    "ThrottlesAlarm": ("AWS/Lambda", "Throttles", function_dimension),
    "TimeoutsAlarm": ({"Ref": "MetricsNamespace"}, "Timeouts", None),
    "InitFailuresAlarm": ({"Ref": "MetricsNamespace"}, "InitFailures", None),
    "FailedImagesAlarm": ({"Ref": "MetricsNamespace"}, "Failed", None),
    "DeadLetterAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                        [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["WarmDeadLetterQueue", "QueueName"]}}]),
    "FailedInvocationsAlarm": ("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                               [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["FailedInvocationQueue", "QueueName"]}}]),
}
for name, (namespace, metric, dimensions) in wanted_alarms.items():
    alarm = alarms.get(name, {})
    check(f"{name}: on {metric}" + (f" of {dimensions[0]['Name']}" if dimensions else ""),
          (alarm.get("Namespace"), alarm.get("MetricName"), alarm.get("Dimensions")) == (namespace, metric, dimensions))
check("every alarm notifies AlarmTopicArn when given",
      alarms and all(a.get("AlarmActions") == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
                     for a in alarms.values()))
filters = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Logs::MetricFilter"}
fed = {}
for f in filters.values():
    check(f"the metric filter {f['FilterPattern']} reads the function's log group",
          f["LogGroupName"] == {"Ref": "LogGroup"})
    for t in f["MetricTransformations"]:
        fed.setdefault(t["MetricName"], []).append(f["FilterPattern"])
check("metric filters count timeouts and failed starts",
      set(fed) == {"Timeouts", "InitFailures"} and all(len(v) == 2 for v in fed.values()))
# The init failure filter looks for the function's own line: it must still say so.
source = (ROOT / "src" / "lambda" / "mod.rs").read_text()
for pattern in fed.get("InitFailures", []):
    if pattern.startswith('"'):
        check(f"the function still logs {pattern} when it cannot start", pattern.strip('"') in source)

# The CachePrefixes pattern (Java's regex syntax, which Python's reads the same here).
prefixes = parameters["CachePrefixes"]
pattern = re.compile(prefixes.get("AllowedPattern", "^$"))
check("CachePrefixes takes 1 to 10 prefixes, ROOT among them, and refuses spaces and an 11th",
      pattern.fullmatch(prefixes["Default"]) and pattern.fullmatch("ROOT")
      and pattern.fullmatch(",".join(f"p{i}" for i in range(10)))
      and pattern.fullmatch("my-app,team/sub.cache_1,ROOT")
      and not pattern.fullmatch(",".join(f"p{i}" for i in range(11)))
      and not pattern.fullmatch("docker-hub, quay") and not pattern.fullmatch(""))



def accepts(name, value):
    """Whether CloudFormation takes `value` for the parameter `name`: its type, and its
    AllowedValues, AllowedPattern (Java's regex syntax, which Python's reads the same for
    these patterns; the whole value must match), MinValue and MaxValue."""
    spec = parameters.get(name, {"Type": "String"})
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        return False
    if spec["Type"] == "Number":
        try:
            number = float(value)
        except ValueError:
            return False
        return float(spec.get("MinValue", number)) <= number <= float(spec.get("MaxValue", number))
    return "AllowedPattern" not in spec or re.fullmatch(spec["AllowedPattern"], value) is not None


# What the function refuses at start (src/lambda/environment.rs and src/warm/settings.rs, from_env; src/duration.rs), the
# template refuses at deploy: a value that passes the template must not stop every start. Each
# parameter: (values the function refuses, values it takes).
refused_and_taken = {
    # WARM_MAX_TPS: a whole number from 1 to 100000, or unset
    "MaxTps": (["0", "2.5", "-1", "100001", "1e3", "1000000", "ten"], ["", "1", "20", "500", "100000"]),
    # WARM_CONCURRENCY: 1 to 256
    "Concurrency": (["0", "257", "2.5", "-1", "", "1e2"], ["1", "16", "100", "199", "256"]),
    # WARM_FANOUT_THRESHOLD: at least 1
    "FanoutThreshold": (["0", "2.5", "-5", ""], ["1", "500", "100000000"]),
    # WARM_MESSAGE_IMAGES: 1 to 1000
    "MessageImages": (["0", "1001", "2.5", ""], ["1", "50", "999", "1000"]),
    # WARM_RECHECK_ATTEMPTS: 0 to 100
    "RecheckAttempts": (["-1", "101", "2.5", ""], ["0", "6", "99", "100"]),
    # WARM_DIGEST_SEARCH: 0 to 1000; WARM_PULL_RESERVE: 0 to 100 (percent)
    "DigestSearch": (["-1", "1001", "2.5", ""], ["0", "50", "999", "1000"]),
    "PullReserve": (["-1", "101", "2.5", "", "10%"], ["0", "10", "100"]),
    # WARM_LAYER_WAIT: a duration of more than zero
    "LayerWait": (["0", "0s", "0ms", "00m", "2d", "1.5m", "m", "", "-1s"], ["1ms", "90", "90s", "2m", "1h"]),
    # WARM_RECHECK_DELAY: from 1s (SQS delays whole seconds) to 15m (SQS's longest delay)
    "RecheckDelay": (["0", "0s", "500ms", "999ms", "901", "901s", "16m", "60m", "1h", "900001ms", "", "5 m"],
                     ["1", "1s", "1000ms", "90s", "5m", "15m", "900", "900s", "899999ms", "900000ms"]),
    # WARM_LAYERS, WARM_DOCTOR, WARM_FROM_ECS: one of their words
    "Layers": (["", "all"], ["none", "request", "verify"]),
    "Doctor": (["", "yes"], ["true", "false"]),
    "WarmFromEcs": (["", "services families"], ["false", "true", "families"]),
    # WARM_IMAGES_S3_URI: s3://BUCKET/KEY, or unset
    "ImagesS3Uri": (["s3://bucket", "s3://bucket/", "https://bucket/key", "s3://B/key"],
                    ["", "s3://lists/warm/images.txt"]),
    # Not the function's, but refused at deploy all the same: SQS advises 5 receives at
    # least, and the creation role is granted a key ARN, not an alias.
    "MaxReceiveCount": (["0", "3", "4", "1001"], ["5", "10", "1000"]),
    "CacheKmsKeyArn": (["alias/cache", "1234abcd-12ab-34cd-56ef-1234567890ab"],
                       ["", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"]),
}
for name, (refused, taken) in refused_and_taken.items():
    let_through = [v for v in refused if accepts(name, v)]
    turned_away = [v for v in taken if not accepts(name, v)]
    check(f"{name} refuses {', '.join(map(repr, refused))}" + (f" (lets through {let_through})" if let_through else ""),
          not let_through)
    check(f"{name} takes {', '.join(map(repr, taken))}" + (f" (refuses {turned_away})" if turned_away else ""),
          not turned_away)
    check(f"{name}'s default is taken", accepts(name, str(parameters.get(name, {}).get("Default", ""))))
# Every parameter that becomes a whole-number or duration setting is in the table above.
checked_settings = {"MaxTps", "Concurrency", "FanoutThreshold", "MessageImages", "RecheckAttempts",
                    "LayerWait", "RecheckDelay", "DigestSearch", "PullReserve"}
check("every whole-number and duration setting is checked against what the function refuses",
      checked_settings <= set(refused_and_taken)
      and {settings[v] for v in ("WARM_MAX_TPS", "WARM_CONCURRENCY", "WARM_FANOUT_THRESHOLD", "WARM_MESSAGE_IMAGES",
                                 "WARM_RECHECK_ATTEMPTS", "WARM_LAYER_WAIT", "WARM_RECHECK_DELAY",
                                 "WARM_DIGEST_SEARCH", "WARM_PULL_RESERVE")}
      == checked_settings)

# After the SAM transform, as CloudFormation gets it, with and without a VPC.
repository_actions = {"ecr:BatchGetImage", "ecr:BatchImportUpstreamImage", "ecr:CreateRepository",
                      "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"}
repository_arn = f"arn:aws:ecr:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}:repository/"
vpc = {"SubnetIds": "subnet-0a,subnet-0b", "SecurityGroupIds": "sg-0a"}
cases = {
    "defaults": ({}, [f"{repository_arn}{p}/*" for p in prefixes["Default"].split(",")]),
    "in a VPC": (vpc, [f"{repository_arn}{p}/*" for p in prefixes["Default"].split(",")]),
    "ten prefixes": ({"CachePrefixes": ",".join(f"p{i}" for i in range(10))},
                     [f"{repository_arn}p{i}/*" for i in range(10)]),
    "a ROOT prefix": ({"CachePrefixes": "docker-hub,ROOT"}, [f"{repository_arn}*"]),
    "an images object": ({"ImagesS3Uri": "s3://lists/warm/images.txt"},
                         [f"{repository_arn}{p}/*" for p in prefixes["Default"].split(",")]),
    "no registry checks": ({"Doctor": "false"}, [f"{repository_arn}{p}/*" for p in prefixes["Default"].split(",")]),
    "what ECS runs": ({"WarmFromEcs": "families", "EcsClusters": "prod"},
                      [f"{repository_arn}{p}/*" for p in prefixes["Default"].split(",")]),
    "ECS events": ({"WarmOnNewTaskDefinition": "true", "WarmOnPullFailure": "true"},
                   [f"{repository_arn}{p}/*" for p in prefixes["Default"].split(",")]),
}
# The read-only ECS actions: every list and describe for WarmFromEcs; for the events alone,
# DescribeTaskDefinition (an event that leaves out the images).
ecs_listing_actions = {"ecs:ListClusters", "ecs:ListServices", "ecs:DescribeServices", "ecs:DescribeTaskDefinition",
                       "ecs:ListTaskDefinitionFamilies", "ecs:ListTaskDefinitions"}


def ecs_actions(values):
    if values.get("WarmFromEcs", "false") != "false":
        return ecs_listing_actions
    if "true" in (values.get("WarmOnNewTaskDefinition"), values.get("WarmOnPullFailure")):
        return {"ecs:DescribeTaskDefinition"}
    return set()


def matches(pattern, event):
    """EventBridge's matching, as far as the template's rules use it: exact values, prefix,
    $or, and a field of an array of objects matching when one element does."""
    if isinstance(event, list):
        return any(matches(pattern, item) for item in event)
    for key, wanted in pattern.items():
        if key == "$or":
            if not any(matches(p, event) for p in wanted):
                return False
        elif isinstance(wanted, dict):
            if not isinstance(event, (dict, list)) or not matches(wanted, event.get(key, {}) if isinstance(event, dict) else event):
                return False
        else:
            value = event.get(key) if isinstance(event, dict) else None
            values = value if isinstance(value, list) else [value]
            if not any(isinstance(v, str) and any(
                    v == w if isinstance(w, str) else v.startswith(w.get("prefix", "\0")) for w in wanted)
                    for v in values):
                return False
    return True
# WARM_DOCTOR's read-only calls: DescribeRepositories on the cache prefixes, the registry-level
# ones on * (they take no resource).
doctor_repository_actions = {"ecr:DescribeRepositories"}
doctor_registry_actions = {"ecr:GetRegistryPolicy", "ecr:ValidatePullThroughCacheRule",
                           "ecr:DescribeRepositoryCreationTemplates"}
for case, (values, expected_arns) in cases.items():
    cfn = to_cloudformation(template, values)
    created = resources_of(cfn, values)
    roles = {name: r["Properties"] for name, r in created.items() if r["Type"] == "AWS::IAM::Role"}
    for name, role in roles.items():
        arns = role.get("ManagedPolicyArns", [])
        check(f"{case}: no managed policy twice on {name} ({', '.join(a.rsplit('/', 1)[-1] for a in arns) or 'none'})",
              len(arns) == len(set(arns)))
    vpc_arn = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
    role_arn = created["WarmerFunction"]["Properties"]["Role"]
    function_role = roles.get(role_arn.strip("<>").split(".")[0], {}) if isinstance(role_arn, str) else {}
    check(f"{case}: the function's role has the VPC access policy exactly when in a VPC",
          function_role and (vpc_arn in function_role.get("ManagedPolicyArns", [])) == (values is vpc))
    statements = [s for policy in function_role.get("Policies", [])
                  for s in policy["PolicyDocument"]["Statement"]]
    doctor = values.get("Doctor", parameters["Doctor"]["Default"]) == "true"
    granted = set()
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resource = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if repository_actions & set(actions):
            check(f"{case}: {statement['Sid']}: the pull actions on {', '.join(r.rsplit(':', 1)[-1] for r in resource)} only"
                  + (", and DescribeRepositories for the registry checks" if doctor else ""),
                  sorted(resource) == sorted(expected_arns)
                  and set(actions) == repository_actions | (doctor_repository_actions if doctor else set()))
        if doctor_registry_actions & set(actions):
            check(f"{case}: {statement['Sid']}: the registry checks' registry-level reads, on * (they take no resource)",
                  doctor and set(actions) == doctor_registry_actions and resource == ["*"])
        if "sqs:SendMessage" in actions:
            check(f"{case}: {statement['Sid']}: sends (SendMessage, which also allows SendMessageBatch) to the function's own queue or its failed-invocation queue only",
                  resource in (["<WarmQueue.Arn>"], ["<FailedInvocationQueue.Arn>"]))
        if "secretsmanager:GetSecretValue" in actions:
            check(f"{case}: {statement['Sid']}: reads only the pull-through cache's secrets (ecr-pullthroughcache/*): {resource}",
                  actions == ["secretsmanager:GetSecretValue"] and len(resource) == 1
                  and str(resource[0]).endswith(":secret:ecr-pullthroughcache/*"))
        if "s3:GetObject" in actions:
            check(f"{case}: {statement['Sid']}: reads the images object only",
                  resource == ["arn:aws:s3:::lists/warm/images.txt"] and values.get("ImagesS3Uri"))
        granted |= set(actions)
    check(f"{case}: exactly the needed actions are granted",
          granted == repository_actions | {"ecr:DescribePullThroughCacheRules", "ecr:DescribeRegistry", "sqs:SendMessage",
                                           "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                           "logs:CreateLogStream", "logs:PutLogEvents",
                                           "secretsmanager:GetSecretValue"}
          | ({"s3:GetObject"} if values.get("ImagesS3Uri") else set())
          | (doctor_repository_actions | doctor_registry_actions if doctor else set())
          | ecs_actions(values))
    ecs_statements = [s for s in statements if any(a.startswith("ecs:") for a in
                      (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]
    check(f"{case}: the ECS actions are read-only, on *",
          all(s["Resource"] == "*" and all(a.split(":")[1].startswith(("List", "Describe")) for a in
                                           (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))
              for s in ecs_statements))
    function_env = created["WarmerFunction"]["Properties"]["Environment"]["Variables"]
    check(f"{case}: a deployment without LogFilter sets no RUST_LOG, and an empty WARM_AWS_ENDPOINT_URL",
          "RUST_LOG" not in function_env and function_env.get("WARM_AWS_ENDPOINT_URL") == "")
    check(f"{case}: WARM_FROM_ECS and WARM_ECS_CLUSTERS as asked",
          (function_env["WARM_FROM_ECS"], function_env["WARM_ECS_CLUSTERS"])
          == (values.get("WarmFromEcs", "false"), values.get("EcsClusters", "")))
    for rule, permission, parameter in (("NewTaskDefinitionRule", "NewTaskDefinitionPermission", "WarmOnNewTaskDefinition"),
                                        ("PullFailureRule", "PullFailurePermission", "WarmOnPullFailure")):
        on = values.get(parameter) == "true"
        targets = created.get(rule, {}).get("Properties", {}).get("Targets", [])
        allowed = created.get(permission, {}).get("Properties", {})
        check(f"{case}: the rule {rule} " + ("invokes the function, which lets it" if on else "is not created"),
              (not on and rule not in created and permission not in created)
              or (on and [t["Arn"] for t in targets] == ["<WarmerFunction.Arn>"]
                  and (allowed.get("Principal"), allowed.get("SourceArn")) == ("events.amazonaws.com", f"<{rule}.Arn>")))

# The parameters of a local run: the processor, and RUST_LOG when a filter is given.
local = resources_of(to_cloudformation(template, {"Architecture": "x86_64", "LogFilter": "debug"}),
                     {"Architecture": "x86_64", "LogFilter": "debug"})["WarmerFunction"]["Properties"]
check("Architecture=x86_64 and LogFilter=debug: an x86_64 function with RUST_LOG=debug",
      local["Architectures"] == ["x86_64"] and local["Environment"]["Variables"].get("RUST_LOG") == "debug")

# Creation templates that set a KMS key name the repository creation role, which the stack
# creates for them (ECR's guide: trusted by ecr.amazonaws.com; CreateRepository,
# ReplicateImage, TagResource; CreateGrant, RetireGrant, DescribeKey on the key).
key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
creation_cases = {
    "rules with a KMS key": ({"CreateEcrPublicRule": "true", "CreateK8sRule": "true", "CacheKmsKeyArn": key_arn},
                             ["ecr-public", "k8s"]),
    "rules without a key": ({"CreateEcrPublicRule": "true", "CreateQuayRule": "true"}, []),
    "a key without rules": ({"CacheKmsKeyArn": key_arn}, []),
}
for case, (values, prefixes_with_role) in creation_cases.items():
    created = resources_of(to_cloudformation(template, values), values)
    role = created.get("RepositoryCreationRole", {}).get("Properties")
    templates = {r["Properties"]["Prefix"]: r["Properties"] for r in created.values()
                 if r["Type"] == "AWS::ECR::RepositoryCreationTemplate"}
    check(f"{case}: " + ("the creation templates name the stack's repository creation role" if prefixes_with_role
                         else "no repository creation role, and no template names one"),
          bool(role) == bool(prefixes_with_role)
          and all(t.get("CustomRoleArn") == ("<RepositoryCreationRole.Arn>" if prefixes_with_role else None)
                  for t in templates.values()))
    if not role:
        continue
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    check(f"{case}: only ECR may assume the repository creation role",
          [(s["Effect"], s["Principal"], s["Action"]) for s in trust]
          == [("Allow", {"Service": "ecr.amazonaws.com"}, "sts:AssumeRole")])
    granted = {(a, r) for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]
               for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
               for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])}
    wanted = ({(a, f"{repository_arn}{p}/*") for a in ("ecr:CreateRepository", "ecr:ReplicateImage", "ecr:TagResource")
               for p in prefixes_with_role}
              | {(a, key_arn) for a in ("kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey")})
    check(f"{case}: the creation role may create, replicate and tag the rules' repositories and use that key, nothing else",
          granted == wanted)

# The rules' patterns match the sample events, and leave out the ECS events that start nothing.
samples = {name: json.loads((ROOT / "events" / f"{name}.json").read_text())
           for name in ("ecs-register-task-definition", "ecs-task-stopped-cannot-pull",
                        "ecs-deployment-state-change", "schedule")}
running = json.loads(json.dumps(samples["ecs-task-stopped-cannot-pull"]))
running["detail"]["lastStatus"] = "RUNNING"
exited = json.loads(json.dumps(samples["ecs-task-stopped-cannot-pull"]))
exited["detail"]["stoppedReason"] = "Essential container in task exited"
for container in exited["detail"]["containers"]:
    container["reason"] = "exit code 1"
only_a_container = json.loads(json.dumps(samples["ecs-task-stopped-cannot-pull"]))
only_a_container["detail"]["stoppedReason"] = "Task failed to start"
registered = resources["NewTaskDefinitionRule"]["Properties"]["EventPattern"]
pull_failed = resources["PullFailureRule"]["Properties"]["EventPattern"]
check("NewTaskDefinitionRule matches the registration of a task definition, nothing else",
      matches(registered, samples["ecs-register-task-definition"])
      and not any(matches(registered, samples[n]) for n in samples if n != "ecs-register-task-definition"))
check("PullFailureRule matches a task stopped by CannotPullContainerError (the task's reason or a container's), nothing else",
      matches(pull_failed, samples["ecs-task-stopped-cannot-pull"]) and matches(pull_failed, only_a_container)
      and not any(matches(pull_failed, e) for e in (running, exited, samples["ecs-register-task-definition"],
                                                    samples["ecs-deployment-state-change"], samples["schedule"])))

for name, ok in results:
    print(("ok   " if ok else "FAIL ") + name)
failed = sum(1 for _, ok in results if not ok)
print(f"template: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
