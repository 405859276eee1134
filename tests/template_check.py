"""Checks of template.yaml beyond what cfn-lint knows: the promises the README makes."""
import sys

from cfnlint.decode import decode

template, errors = decode("template.yaml")
if errors:
    sys.exit(f"template.yaml does not parse: {errors}")

resources = template["Resources"]
function = resources["WarmerFunction"]
props = function["Properties"]
results = []


def check(name, condition):
    results.append((name, bool(condition)))


check("arm64 on provided.al2023, built by cargo-lambda",
      props["Runtime"] == "provided.al2023" and props["Architectures"] == ["arm64"]
      and function["Metadata"]["BuildMethod"] == "rust-cargolambda")

visibility = template["Mappings"]["VisibilityTimeout"]
timeouts = template["Parameters"]["Timeout"]["AllowedValues"]
check("a visibility timeout of six times every allowed function timeout",
      all(int(visibility[str(t)]["Seconds"]) >= 6 * int(t) for t in timeouts))

queue = resources["WarmQueue"]["Properties"]
check("the queue redrives to the dead-letter queue after 3 receives",
      queue["RedrivePolicy"]["maxReceiveCount"] == 3)

events = props["Events"]
check("the SQS event source reports batch item failures",
      events["Queue"]["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"])
check("a schedule whose expression is a parameter, every 12 hours by default",
      events["Schedule"]["Properties"]["Schedule"] == {"Ref": "ScheduleExpression"}
      and template["Parameters"]["ScheduleExpression"]["Default"] == "rate(12 hours)")

repository_actions = {"ecr:BatchGetImage", "ecr:BatchImportUpstreamImage", "ecr:CreateRepository",
                      "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"}
statements = [s for policy in props["Policies"] if isinstance(policy, dict) and "Statement" in policy
              for s in policy["Statement"]]
granted = set()
for statement in statements:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    if repository_actions & set(actions):
        check(f"{statement['Sid']}: repository actions are not granted on *", statement["Resource"] != "*")
    granted |= set(actions)
check("exactly the needed actions are granted",
      granted == repository_actions | {"ecr:DescribePullThroughCacheRules", "sqs:SendMessage"})

env = props["Environment"]["Variables"]
check("the function gets every setting",
      set(env) == {"WARM_IMAGES", "WARM_RULES", "WARM_CONCURRENCY", "WARM_QUEUE_URL",
                   "WARM_FANOUT_THRESHOLD", "WARM_MESSAGE_IMAGES", "METRICS_NAMESPACE"})
check("function name, queue URL and dead-letter queue URL are outputs",
      {"FunctionName", "QueueUrl", "DeadLetterQueueUrl"} <= set(template["Outputs"]))

for name, ok in results:
    print(("ok   " if ok else "FAIL ") + name)
failed = sum(1 for _, ok in results if not ok)
print(f"template: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
