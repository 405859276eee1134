"""template.yaml as CloudFormation sees it: the SAM transform (aws-sam-translator, as
`sam deploy` runs it), and a resolver of the intrinsic functions that depend only on
parameters, for checks that need no stack. Used by tests/template_check.py and
tests/deploy_check.py."""
import copy
import json
import logging
import os
import re
from pathlib import Path

from cfnlint.decode import decode
from samtranslator.translator.transform import transform

# The translator records usage metrics and warns at exit that nobody published them.
logging.getLogger("samtranslator").setLevel(logging.ERROR)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"

# What SAM would look up in IAM for the managed policies a template names by name.
MANAGED_POLICIES = {
    name: f"arn:aws:iam::aws:policy/service-role/{name}"
    for name in ("AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole",
                 "AWSLambdaSQSQueueExecutionRole")
}

PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "warmer",
    "AWS::URLSuffix": "amazonaws.com",
}


class _PolicyLoader:
    def load(self):
        return dict(MANAGED_POLICIES)


def load_sam(path=TEMPLATE):
    """template.yaml as plain data (YAML short forms turned into Fn:: keys)."""
    template, errors = decode(str(path))
    if errors:
        raise SystemExit(f"{path} does not parse: {errors}")
    return json.loads(json.dumps(template))


def to_cloudformation(sam, parameters, code_uri="s3://package-bucket/bootstrap.zip", region="us-east-1"):
    """The SAM transform of `sam`, with the function's code at `code_uri` (as `sam deploy`
    puts it after uploading the package)."""
    sam = copy.deepcopy(sam)
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = code_uri
    values = {name: spec.get("Default") for name, spec in sam.get("Parameters", {}).items()}
    values.update(parameters)
    values.update({"AWS::Region": region, "AWS::Partition": "aws"})
    # The translator asks boto3 for the Region even when it is given.
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    return transform(sam, values, _PolicyLoader())


class Resolver:
    """Evaluates Ref, Fn::If, Fn::Join, Fn::Split, Fn::Select, Fn::Sub and the condition
    functions over parameter values. A reference to a resource (Ref or Fn::GetAtt) takes
    its value from `created` ({"Logical": physical id, "Logical.Attribute": value}) when
    given there, and otherwise becomes the text `<Logical>` or `<Logical.Attribute>`."""

    def __init__(self, template, parameters, created=None, pseudo=None):
        self.template = template
        self.created = created or {}
        self.values = {**PSEUDO, **(pseudo or {})}
        for name, spec in template.get("Parameters", {}).items():
            value = parameters.get(name, spec.get("Default", ""))
            if spec["Type"] in ("CommaDelimitedList", "List<AWS::EC2::Subnet::Id>"):
                value = value if isinstance(value, list) else str(value).split(",")
            self.values[name] = value
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    def resolve(self, node):
        if isinstance(node, list):
            resolved = [self.resolve(item) for item in node]
            return [item for item in resolved if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            handler = _FUNCTIONS.get(key)
            if handler:
                return handler(self, arg)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not _NO_VALUE}

    def ref(self, name):
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.values:
            return self.values[name]
        return self.attribute(name)

    def attribute(self, name):
        return self.created.get(name, f"<{name}>")

    def sub(self, arg):
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def value(match):
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name:
                return str(self.attribute(name))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", value, text)


_NO_VALUE = object()


def _select(resolver, arg):
    index, items = resolver.resolve(arg[0]), resolver.resolve(arg[1])
    return items[int(index)]


_FUNCTIONS = {
    "Ref": lambda r, arg: r.ref(arg),
    "Fn::GetAtt": lambda r, arg: r.attribute(arg if isinstance(arg, str) else ".".join(arg)),
    "Fn::If": lambda r, arg: r.resolve(arg[1] if r.condition(arg[0]) else arg[2]),
    # CloudFormation takes only a literal delimiter; resolved here all the same, so that a
    # check can report a template that breaks that rule rather than crash on it.
    "Fn::Join": lambda r, arg: str(r.resolve(arg[0])).join(str(v) for v in r.resolve(arg[1])),
    "Fn::Split": lambda r, arg: r.resolve(arg[1]).split(str(r.resolve(arg[0]))),
    "Fn::Select": _select,
    "Fn::Sub": lambda r, arg: r.sub(arg),
    "Fn::FindInMap": lambda r, arg: r.template["Mappings"][r.resolve(arg[0])][str(r.resolve(arg[1]))][r.resolve(arg[2])],
    "Fn::Equals": lambda r, arg: str(r.resolve(arg[0])) == str(r.resolve(arg[1])),
    "Fn::Not": lambda r, arg: not r.resolve(arg[0]),
    "Fn::And": lambda r, arg: all(r.resolve(v) for v in arg),
    "Fn::Or": lambda r, arg: any(r.resolve(v) for v in arg),
    "Condition": lambda r, arg: r.condition(arg),
}


def resources_of(template, parameters, created=None, pseudo=None):
    """The resources CloudFormation would create with these parameters, their properties
    resolved as far as parameters (and the resources of `created`, see Resolver) allow."""
    resolver = Resolver(template, parameters, created, pseudo)
    return {
        name: {**resource, "Properties": resolver.resolve(resource.get("Properties", {}))}
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or resolver.condition(resource["Condition"])
    }
