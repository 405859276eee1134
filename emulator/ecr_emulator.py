"""An emulator of Amazon ECR with pull-through cache semantics, built on moto's server.

moto serves ECR's repositories and images; this adds what moto lacks:

- CreatePullThroughCacheRule, DescribePullThroughCacheRules (paginated), DeletePullThroughCacheRule;
- the first pull through a rule imports the image from an upstream catalog (a JSON file),
  creating the cache repository as ECR does; a tag that changed upstream is refreshed on a pull
  after the re-check interval (24 hours, as in ECR); a tag absent upstream gives ImageNotFound; a
  namespace that the registry policy denies gives RepositoryNotFoundException, as ECR does;
- only a pull by tag fills the cache: a pull by digest, or by tag and digest, of an image that is
  not in the cache repository yet fails ImageNotFound, as users report of ECR
  (aws/containers-roadmap #2837);
- DescribeImages with imagePushedAt (when the cache imported the image) and lastRecordedPullTime
  (its last pull through BatchGetImage), ECR's fields;
- GetDownloadUrlForLayer for imported layers (the config blob and every layer of each image
  manifest), with a URL on ECR's layer storage once the layer is cached and an upstream URL
  while it is pending, and ECR's layer errors on demand;
- the registry's configuration that decides whether a first pull can work: GetRegistryPolicy,
  PutRegistryPolicy and DeleteRegistryPolicy with the pull-through cache actions (moto's
  refuses all but CreateRepository and ReplicateImage); ValidatePullThroughCacheRule;
  CreateRepositoryCreationTemplate, DescribeRepositoryCreationTemplates (paginated) and
  DeleteRepositoryCreationTemplate, whose tag mutability and encryption the repositories that
  the cache creates get, as in ECR;
- fault injection: added latency, a share of ThrottlingException, a share of UpstreamUnavailable,
  a share of UnableToGetUpstreamLayerException; each decision is a pure function of the seed and
  the request, not of arrival order;
- the upstream registries themselves, from the same catalog: the registry API v2 (Docker
  distribution / OCI) under /upstream/<registry>/, with token authentication, paginated tag
  lists, Docker Hub-style pull limits that the cache's imports spend too, and a log of the
  requests (see "Upstream registries" below), so that what a client lists upstream is what the
  cache imports.

Run: python emulator/ecr_emulator.py --port 5000 [--config emulator/demo.json]

Config keys (a JSON object; all optional):

  rules                      pull-through cache rules to create at start, as CreatePullThroughCacheRule
                             takes them ({"ecrRepositoryPrefix", "upstreamRegistryUrl", ...}). Any
                             upstreamRegistryUrl is taken, e.g. localhost:5000 for the catalog's
                             registry of that name; a rule's upstreamRegistry, unless given, is ECR's
                             name for the URL (quay.io: quay, ...), and docker-hub for a URL ECR has
                             no name for.
  region                     the Region of those rules (default us-east-1).
  catalog                    the upstream catalog (default catalog.json beside this file); relative
                             to the config file when given with --config. Its format is in its
                             _comment; a tag may be an alias of another tag of its repository.
  recheck_interval_seconds   a cached tag is checked upstream again only when pulled at least this
                             long after its last check (default 86400: ECR's 24 hours). Tests that
                             move a tag upstream and expect a refresh set 0.
  denied_namespaces          cache repository prefixes whose first pull fails as a registry policy
                             without ecr:CreateRepository does: RepositoryNotFoundException. (The
                             registry policy below is stored and answered, not enforced: whether a
                             pull is allowed also depends on the caller's IAM policy.)
  registry_policy            the registry permissions policy at start (a JSON object, or its text),
                             as PutRegistryPolicy takes it.
  repository_creation_templates
                             templates to create at start, as CreateRepositoryCreationTemplate
                             takes them ({"prefix", "appliedFor", "imageTagMutability", ...}).
  repositories               repositories to create at start, as CreateRepository takes them
                             ({"repositoryName", "imageTagMutability"}), e.g. a cache repository
                             with IMMUTABLE tags.
  invalid_credentials        {credential ARN or secret name: failure}: ValidatePullThroughCacheRule
                             of a rule whose credentialArn is listed (or contains the secret name)
                             answers isValid false with that failure; any other rule is valid.

  Layers. GetDownloadUrlForLayer counts the requests of each layer digest per Region and
  repository that get past throttling and find the layer in the repository; k is the number of
  earlier such requests of the same layer in the same repository. A request is answered by the
  first of these that applies:
  layer_errors               {"sha256:...": CODE} or {"sha256:...": {"code": CODE, "requests": N}}:
                             the layer fails with CODE (LayerInaccessibleException,
                             UnableToGetUpstreamLayerException or LayersNotFoundException, with
                             ECR's message) on every request, or only while k < N.
  faults.upstream_layer_error_share
                             a share (0..1) of requests fails with UnableToGetUpstreamLayerException
                             ("Error encountered while getting the upstream layer matching the pull
                             through cache rule."); drawn from a hash of (seed, Region, repository,
                             digest, k), so a retry draws anew.
  then, while the layer is pending, the upstream URL https://<upstream registry>/v2/<upstream
  path>/blobs/<digest>; otherwise a URL on ECR's layer storage, https://prod-<region>-starport-
  layer-bucket.s3.<region>.amazonaws.com/... A pending layer is pending while fewer than
  `requests` earlier requests were answered with a URL (errors do not count) or less than
  `seconds` have passed since its first request in the repository (errors count): it becomes
  cached once both have run out.
  pending_layer_share        the share (0..1) of layers that are pending, chosen by a hash of the
                             digest alone (default 0).
  pending_layer_requests     requests for such a layer (default 1: only the first request is pending;
                             a very large number keeps it pending for ever).
  pending_layer_seconds      seconds for such a layer (default 0).
  pending_layers             layers pending whatever the share: a list of digests (with
                             pending_layer_requests and pending_layer_seconds), or
                             {"sha256:...": {"requests": N, "seconds": S}}, a missing key taking
                             the global value ({"requests": 0, "seconds": 0} exempts a layer from the share).

  faults                     {"latency_ms": added to every ECR call,
                              "throttle_share": share of BatchGetImage, DescribeImages and
                                GetDownloadUrlForLayer calls answered ThrottlingException,
                              "upstream_unavailable_share": share of tags in a BatchGetImage that
                                fail with UpstreamUnavailable instead of being pulled through,
                              "upstream_layer_error_share": see above,
                              "upstream_outages": [{"from_s", "to_s", "repositories"}]: windows,
                                in seconds since the emulator started, in which the upstream is
                                down for the cache repositories under those prefixes (every one
                                when none is given): an uncached tag fails UpstreamUnavailable, a
                                cached one is served as it is,
                              "seed": integer (default 1)}.
                             Every fault decision hashes (seed, fault, operation, Region,
                             repository, image ids or layer digest, how many times this same
                             request was seen before): the same workload gets the same faults
                             whatever the order in which concurrent requests arrive, and a retry
                             of a failed request draws anew.

  Upstream registries (the API below).
  upstream_credentials       {"<registry>": {"username": ..., "accessToken": ...}}: the token endpoint
                             of that registry answers only requests with Authorization: Basic
                             base64(username:accessToken), others (anonymous included) get 401
                             {"details": "incorrect username or password"}. Other registries give a
                             token to anyone.
  upstream_page_size         tags per tags/list page when the request has no n (default 100).
  upstream_max_page_size     the most tags per page: a larger n is cut to this (default 1000).
  upstream_token_seconds     how long a token is valid, its expires_in (default 300).
  upstream_faults            {"throttle_requests": N, "retry_after_seconds": S, "unavailable_requests": M}:
                             per (registry, repository), the first N tags/list requests that carry a
                             valid token are answered 429 TOOMANYREQUESTS with Retry-After: S (default
                             1), the next M 503 UNAVAILABLE, the rest as usual. Counted, not drawn.
  upstream_pull_limits       {"<registry>": {"limit": N, "remaining": M, "window_seconds": W}}: that
                             registry counts manifest pulls as Docker Hub does. Its manifest answers
                             (GET and HEAD) carry ratelimit-limit: N;w=W and ratelimit-remaining: M;w=W
                             (W default 21600, Docker Hub's 6 hours; M default N). A GET that serves a
                             manifest spends one pull, a HEAD none; with none left a GET answers 429
                             TOOMANYREQUESTS. The cache's imports through a rule for that registry
                             spend the same pulls, one per manifest fetched (the tag's manifest on a
                             first pull or a re-check, then each platform manifest of an index that
                             is not cached yet); with too few left an uncached tag fails
                             UpstreamTooManyRequests and a cached one is still served. The count
                             never resets (the window is only shown). A registry not listed is
                             unlimited and sends no such headers.

Upstream registries: every registry of the catalog (registry-1.docker.io, public.ecr.aws, quay.io,
registry.k8s.io, localhost:5000) is served under http://<emulator>/upstream/<registry>, a base URL to
which a registry client adds /v2/...; a registry that is not in the catalog answers 404. Repository
names keep their slashes (library/nginx, team/app). Answers are JSON (a manifest: its own bytes
and media type) with Docker-Distribution-API-Version: registry/2.0.

  GET <base>/v2/             200 {} with a valid Bearer token of this registry, else 401 with
                             WWW-Authenticate: Bearer realm="http://<Host header>/upstream/<registry>/token",
                             service="<registry>" and {"errors": [{"code": "UNAUTHORIZED", ...}]}.
  GET <base>/token?service=<registry>&scope=repository:<name>:pull
                             200 {"token", "access_token", "expires_in", "issued_at"}: a random opaque
                             token that the emulator remembers with its pull scopes (scope may repeat,
                             or hold several scopes separated by spaces); see upstream_credentials.
  GET <base>/v2/<name>/tags/list[?n=N&last=TAG]
                             without a valid token for repository:<name>:pull, 401 with the challenge
                             above plus scope="repository:<name>:pull",error="insufficient_scope";
                             then upstream_faults; then 404 NAME_UNKNOWN for a repository not in the
                             catalog; else 200 {"name", "tags"}: the tags in lexical order (as
                             registries list them: nothing to do with which is newest), those after
                             TAG, at most N (upstream_page_size, upstream_max_page_size). While tags
                             remain, a Link: </upstream/<registry>/v2/<name>/tags/list?n=N&last=<last
                             tag of the page>>; rel="next" header, a path relative to the request URL.
  GET|HEAD <base>/v2/<name>/manifests/<tag or digest>
                             with a token as for tags/list (no faults), the manifest's bytes, with
                             its media type as Content-Type and Docker-Content-Digest: the same bytes
                             and digest as the cache imports; 404 MANIFEST_UNKNOWN if there is none;
                             see upstream_pull_limits for the ratelimit-* headers and 429.
  GET /upstream/_requests    the log of the upstream requests served, oldest first: [{"registry",
                             "method", "path" (below the base: /v2/..., /token), "query" (as sent),
                             "auth" ("none", "basic" or "bearer": the scheme of the Authorization
                             header, never its value), "status"}]. DELETE /upstream/_requests
                             empties it.
"""

import argparse
import base64
import binascii
import hashlib
import io
import json
import os
import secrets
import sys
import threading
import time
from datetime import datetime, timezone
from http import HTTPStatus
from urllib.parse import parse_qs, quote

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ecr.models import ecr_backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

CONFIG_KEYS = __doc__[__doc__.index("Config keys"):]
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
DEFAULT_CATALOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalog.json")
INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
LAYER_ERRORS = {
    "LayerInaccessibleException": "The specified layer is not available because it is not associated "
    "with an image. Unassociated image layers may be cleaned up at any time.",
    "UnableToGetUpstreamLayerException": "Error encountered while getting the upstream layer matching "
    "the pull through cache rule.",
    "LayersNotFoundException": "The specified layers could not be found, or the specified layer is not "
    "valid for this repository.",
}
# What a registry policy may grant (anything else is refused, as ECR does).
REGISTRY_POLICY_ACTIONS = {"ecr:ReplicateImage", "ecr:CreateRepository", "ecr:BatchImportUpstreamImage", "ecr:*"}
# ECR's upstream registry names, by upstream URL.
UPSTREAM_NAMES = {
    "public.ecr.aws": "ecr-public",
    "registry.k8s.io": "k8s",
    "quay.io": "quay",
    "registry-1.docker.io": "docker-hub",
    "ghcr.io": "github-container-registry",
    "registry.gitlab.com": "gitlab-container-registry",
    "cgr.dev": "chainguard",
}
UPSTREAM_PREFIX = "/upstream/"
# What a registry answers when it refuses a request, by HTTP status.
UPSTREAM_ERRORS = {
    429: {"code": "TOOMANYREQUESTS", "message": "rate limit exceeded"},
    503: {"code": "UNAVAILABLE", "message": "service unavailable"},
}
# Docker Hub's answer to a manifest GET over the pull limit, as users quote it.
PULL_LIMIT_ERROR = {"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit. You may "
                    "increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"}
# ECR re-checks a cached tag upstream at most once per 24 hours (ECR user guide).
DEFAULT_RECHECK_SECONDS = 86400
# Docker Hub's pull-limit window, 6 hours, as its ratelimit-* headers give it (w=21600).
PULL_LIMIT_WINDOW_SECONDS = 21600
# ECR's failureReason texts. ImageNotFound's is what users see ("manifest unknown: Requested image
# not found"); UpstreamTooManyRequests' is not documented anywhere: a plausible text.
IMAGE_NOT_FOUND = "Requested image not found"
UPSTREAM_TOO_MANY_REQUESTS = "The upstream registry refused the request: too many requests (pull rate limit)"


def upstream_name(url):
    """ECR's name of an upstream registry (upstreamRegistry) from its URL. A registry that ECR has
    no name for (localhost:5000, a registry of one's own) is taken as docker-hub, ECR's type of a
    registry reached with a username and an access token."""
    host = url.split("://", 1)[-1].split("/", 1)[0].lower()
    if host in UPSTREAM_NAMES:
        return UPSTREAM_NAMES[host]
    if host.endswith(".azurecr.io"):
        return "azure-container-registry"
    if ".dkr.ecr." in host and host.endswith(".amazonaws.com"):
        return "ecr"
    return "docker-hub"


class EcrError(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class Catalog:
    """The upstream registries: registry -> repository -> tag -> manifest bytes.

    Read again whenever the file changes, so that a test can move a tag upstream."""

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.registries = {}
        self.lock = threading.Lock()

    def lookup(self, registry, repository, tag):
        """(manifest bytes, media type, digest, children) of a tag, or None."""
        entry = self.repository(registry, repository)
        return entry["tags"].get(tag) if entry else None

    def has_registry(self, registry):
        return registry in self._current()

    def repository(self, registry, repository):
        """{"tags": tag -> manifest, "digests": digest -> manifest} of a repository, or None."""
        return self._current().get(registry, {}).get(repository)

    def _current(self):
        with self.lock:
            mtime = os.stat(self.path).st_mtime_ns
            if mtime != self.mtime:
                with open(self.path) as f:
                    self.registries = load_catalog(json.load(f))
                self.mtime = mtime
            return self.registries


def load_catalog(data):
    """Serializes every manifest and computes its digest and size from its bytes; a tag whose
    value is a string is an alias of the tag it names."""
    registries = {}
    for registry, repositories in data.items():
        if registry.startswith("_"):
            continue
        registries[registry] = {}
        for repository, entry in repositories.items():
            named = entry.get("manifests", {})
            written = entry.get("tags", {})
            resolved, tags = {}, {}

            def resolve(name, stack=()):
                if name in resolved:
                    return resolved[name]
                if name not in named or name in stack:
                    raise ValueError(f"catalog {registry}/{repository}: no manifest named {name!r}")
                resolved[name] = serialize(named[name], lambda n: resolve(n, stack + (name,)))
                return resolved[name]

            def tag(name, aliases=()):
                if name not in tags:
                    value = written[name]
                    if isinstance(value, str):
                        if value not in written:
                            raise ValueError(f"catalog {registry}/{repository}: tag {name!r} is an alias of "
                                             f"{value!r}, which is not a tag of the repository")
                        if value in aliases + (name,):
                            raise ValueError(f"catalog {registry}/{repository}: tag {name!r} is an alias of "
                                             f"{value!r}, which leads back to it: no manifest")
                        tags[name] = tag(value, aliases + (name,))
                    else:
                        tags[name] = serialize(value, resolve)
                return tags[name]

            for name in written:
                tag(name)
            digests = {}
            pending = list(tags.values())
            while pending:
                manifest = pending.pop()
                digests[manifest[2]] = manifest
                pending.extend(manifest[3])
            registries[registry][repository] = {"tags": tags, "digests": digests}
    return registries


def serialize(manifest, resolve):
    """(bytes, media type, digest, children) with "@name" placeholders filled in."""
    children = []

    def fill(value):
        if isinstance(value, dict):
            filled = {k: fill(v) for k, v in value.items()}
            if isinstance(value.get("digest"), str) and value["digest"].startswith("@"):
                child = resolve(value["digest"][1:])
                filled["size"] = len(child[0])
                children.append(child)
            return filled
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, str) and value.startswith("@"):
            return resolve(value[1:])[2]
        return value

    body = json.dumps(fill(manifest), indent=3).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    return body, manifest["mediaType"], digest, children


def draw(*parts):
    """A number in [0, 1) that depends on nothing but the parts."""
    text = "\x1f".join(str(part) for part in parts)
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16) / 2**64


def layer_share(digest):
    """Where a layer falls in pending_layer_share: a hash of its digest alone."""
    return int(hashlib.sha256(digest.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def layers_of(manifest_bytes):
    manifest = json.loads(manifest_bytes)
    return [layer["digest"] for layer in manifest.get("layers", [])] + (
        [manifest["config"]["digest"]] if "config" in manifest else []
    )


class Emulator:
    """A WSGI app: ECR calls this emulator knows are answered here, the rest by moto."""

    def __init__(self, config):
        self.config = config
        self.catalog = Catalog(config.get("catalog", DEFAULT_CATALOG))
        self.recheck_seconds = float(config.get("recheck_interval_seconds", DEFAULT_RECHECK_SECONDS))
        self.denied = list(config.get("denied_namespaces", []))
        self.pending_layer_share = float(config.get("pending_layer_share", 0))
        self.pending_requests = int(config.get("pending_layer_requests", 1))
        self.pending_seconds = float(config.get("pending_layer_seconds", 0))
        self.pending_layers = pending_layers(config.get("pending_layers", []),
                                             self.pending_requests, self.pending_seconds)
        self.layer_errors = layer_errors(config.get("layer_errors", {}))
        faults = config.get("faults", {})
        self.latency = float(faults.get("latency_ms", 0)) / 1000
        self.throttle_share = float(faults.get("throttle_share", 0))
        self.unavailable_share = float(faults.get("upstream_unavailable_share", 0))
        self.started = time.monotonic()
        self.outages = [(float(o.get("from_s", 0)), float(o["to_s"]), tuple(o.get("repositories", [])))
                        for o in faults.get("upstream_outages", [])]
        self.layer_error_share = float(faults.get("upstream_layer_error_share", 0))
        self.seed = faults.get("seed", 1)
        self.rules = {}  # (region, prefix) -> rule
        self.policies = {}  # region -> registry policy text
        self.templates = {}  # (region, prefix) -> repository creation template
        self.invalid_credentials = dict(config.get("invalid_credentials", {}))
        self.checked = {}  # (region, repository, tag) -> time of the last upstream check
        # (region, repository, digest) -> [requests so far, of which answered with a URL, time of the first]
        self.layer_requests = {}
        self.seen = {}  # request key of a fault decision -> how many times it was seen
        self.upstream_credentials = {
            registry: f"{credential['username']}:{credential['accessToken']}"
            for registry, credential in config.get("upstream_credentials", {}).items()
        }
        self.upstream_page_size = int(config.get("upstream_page_size", 100))
        self.upstream_max_page_size = int(config.get("upstream_max_page_size", 1000))
        self.upstream_token_seconds = int(config.get("upstream_token_seconds", 300))
        upstream_faults = config.get("upstream_faults", {})
        self.upstream_throttled = int(upstream_faults.get("throttle_requests", 0))
        self.upstream_retry_after = int(upstream_faults.get("retry_after_seconds", 1))
        self.upstream_unavailable = int(upstream_faults.get("unavailable_requests", 0))
        # registry -> {"limit", "remaining", "window"}: manifest pulls, counted as Docker Hub does.
        self.pull_limits = {
            registry: {"limit": int(limit["limit"]), "remaining": int(limit.get("remaining", limit["limit"])),
                       "window": int(limit.get("window_seconds", PULL_LIMIT_WINDOW_SECONDS))}
            for registry, limit in config.get("upstream_pull_limits", {}).items()
        }
        self.pulled = {}  # (region, repository, digest) -> time of its last pull through BatchGetImage
        self.tokens = {}  # token -> (registry, scopes, expiry on time.monotonic())
        self.listings = {}  # (registry, repository) -> tags/list requests with a valid token so far
        self.upstream_log = []
        self.lock = threading.RLock()
        self.moto = DomainDispatcherApplication(create_backend_app)
        # moto keeps its state per process: an emulator starts from an empty registry.
        ecr_backends[DEFAULT_ACCOUNT_ID].reset()
        self.handlers = {
            "CreatePullThroughCacheRule": self.create_rule,
            "DescribePullThroughCacheRules": self.describe_rules,
            "DeletePullThroughCacheRule": self.delete_rule,
            "BatchGetImage": self.batch_get_image,
            "GetDownloadUrlForLayer": self.get_download_url_for_layer,
            "ValidatePullThroughCacheRule": self.validate_rule,
            "PutRegistryPolicy": self.put_policy,
            "GetRegistryPolicy": self.get_policy,
            "DeleteRegistryPolicy": self.delete_policy,
            "CreateRepositoryCreationTemplate": self.create_template,
            "DescribeRepositoryCreationTemplates": self.describe_templates,
            "DeleteRepositoryCreationTemplate": self.delete_template,
        }
        region = config.get("region", "us-east-1")
        for rule in config.get("rules", []):
            self.create_rule(rule, region)
        if "registry_policy" in config:
            policy = config["registry_policy"]
            self.put_policy({"policyText": policy if isinstance(policy, str) else json.dumps(policy)}, region)
        for template in config.get("repository_creation_templates", []):
            self.create_template(template, region)
        for repository in config.get("repositories", []):
            ecr_backends[DEFAULT_ACCOUNT_ID][region].create_repository(
                repository["repositoryName"], None, None, None,
                repository.get("imageTagMutability", "MUTABLE"), [])

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(UPSTREAM_PREFIX):
            return self.upstream(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(TARGET_PREFIX):
            return self.moto(environ, start_response)
        operation = target[len(TARGET_PREFIX):]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            self.inject_faults(operation, body, region_of(environ))
            if operation == "DescribeImages":
                return self.describe_images(environ, start_response, body, region_of(environ))
            handler = self.handlers.get(operation)
            if handler is None:
                return self.moto(environ, start_response)
            with self.lock:
                answer = handler(json.loads(body or b"{}"), region_of(environ))
            return respond(start_response, 200, answer)
        except EcrError as error:
            return respond(start_response, error.status, {"__type": error.code, "message": error.message})

    def describe_images(self, environ, start_response, body, region):
        """moto's DescribeImages (with its imagePushedAt: when the cache imported the image), plus
        ECR's lastRecordedPullTime for the images that BatchGetImage has served. (ECR updates that
        time at least once every 24 hours; here on every pull.)"""
        answered = {}

        def capture(status, headers, exc_info=None):
            answered["status"], answered["headers"] = status, headers

        data = b"".join(self.moto(environ, capture))
        if not answered["status"].startswith("200"):
            start_response(answered["status"], answered["headers"])
            return [data]
        answer = json.loads(data)
        name = json.loads(body or b"{}").get("repositoryName")
        with self.lock:
            for detail in answer.get("imageDetails", []):
                pulled = self.pulled.get((region, name, detail.get("imageDigest")))
                if pulled is not None:
                    detail["lastRecordedPullTime"] = pulled
        return respond(start_response, 200, answer)

    def inject_faults(self, operation, body, region):
        if self.latency:
            time.sleep(self.latency)
        if operation in ("BatchGetImage", "DescribeImages", "GetDownloadUrlForLayer") and self.throttle_share:
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                request = {}
            if not isinstance(request, dict):
                request = {}
            ids = sorted(f"{i.get('imageTag', '')}@{i.get('imageDigest', '')}"
                         for i in request.get("imageIds") or [] if isinstance(i, dict))
            subject = request.get("layerDigest") or ",".join(ids)
            if self.fault("ThrottlingException", self.throttle_share,
                          operation, region, request.get("repositoryName", ""), subject):
                raise EcrError("ThrottlingException", "Rate exceeded")

    def in_outage(self, repository):
        """Whether an outage window of the upstream holds now for this cache repository."""
        now = time.monotonic() - self.started
        return any(start <= now < end and (not prefixes or any(
            repository == prefix or repository.startswith(prefix + "/") for prefix in prefixes))
            for start, end, prefixes in self.outages)

    def fault(self, kind, share, *request):
        """Whether this occurrence of the request gets the fault: a hash of the seed, the fault,
        the request and how many times the same request was seen before, so that concurrent
        clients get the same faults whatever the order in which their requests arrive."""
        if share <= 0:
            return False
        key = (kind,) + request
        with self.lock:
            seen = self.seen.get(key, 0)
            self.seen[key] = seen + 1
        return draw(self.seed, *key, seen) < share

    # --- the upstream registries' API (Docker registry API v2 / OCI distribution) ---

    def upstream(self, environ, start_response):
        path = environ["PATH_INFO"][len(UPSTREAM_PREFIX):]
        method = environ.get("REQUEST_METHOD", "GET")
        if path.rstrip("/") == "_requests":
            with self.lock:
                if method == "DELETE":
                    self.upstream_log.clear()
                    log = []
                else:
                    log = list(self.upstream_log)
            return upstream_respond(start_response, 200, log)
        registry, _, rest = path.partition("/")
        rest = "/" + rest
        status, body, headers = self.upstream_answer(environ, method, registry, rest)
        scheme = environ.get("HTTP_AUTHORIZATION", "").split(" ", 1)[0].lower()
        with self.lock:
            self.upstream_log.append({
                "registry": registry,
                "method": method,
                "path": rest,
                "query": environ.get("QUERY_STRING", ""),
                "auth": scheme if scheme in ("basic", "bearer") else "none",
                "status": status,
            })
        return upstream_respond(start_response, status, body, headers, head=method == "HEAD")

    def upstream_answer(self, environ, method, registry, path):
        """(status, JSON body, headers) of a request to an upstream registry."""
        if not self.catalog.has_registry(registry):
            return 404, {"errors": [{"code": "NOT_FOUND", "message": "no such registry in the emulator's catalog",
                                     "detail": {"registry": registry}}]}, []
        if method not in ("GET", "HEAD"):
            return 405, {"errors": [{"code": "UNSUPPORTED", "message": "The operation is unsupported."}]}, []
        if path == "/token":
            return self.upstream_token(environ, registry)
        if path in ("/v2", "/v2/"):
            if self.bearer(environ, registry) is None:
                return self.challenge(environ, registry, None)
            return 200, {}, []
        if path.startswith("/v2/") and path.endswith("/tags/list") and len(path) > len("/v2//tags/list"):
            return self.upstream_tags(environ, registry, path[len("/v2/"):-len("/tags/list")])
        name, sep, reference = path[len("/v2/"):].rpartition("/manifests/")
        if path.startswith("/v2/") and sep and name and reference:
            return self.upstream_manifest(environ, method, registry, name, reference)
        return 404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]}, []

    def upstream_token(self, environ, registry):
        credential = self.upstream_credentials.get(registry)
        if credential is not None and basic_credential(environ) != credential:
            return 401, {"details": "incorrect username or password"}, [
                ("WWW-Authenticate", f'Basic realm="{registry}"')]
        scopes = set()
        for value in parse_qs(environ.get("QUERY_STRING", "")).get("scope", []):
            for scope in value.split():
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind == "repository" and name and ({"pull", "*"} & set(actions.split(","))):
                    scopes.add(f"repository:{name}:pull")
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = (registry, frozenset(scopes), time.monotonic() + self.upstream_token_seconds)
        issued = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        return 200, {"token": token, "access_token": token, "expires_in": self.upstream_token_seconds,
                     "issued_at": issued}, []

    def bearer(self, environ, registry):
        """The scopes of the request's Bearer token if it is one this registry issued and it has
        not expired, else None."""
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        with self.lock:
            issued = self.tokens.get(token.strip())
        if issued is None or issued[0] != registry or time.monotonic() >= issued[2]:
            return None
        return issued[1]

    def challenge(self, environ, registry, name):
        """401 with the Bearer challenge that tells where to get a token (for name's pull scope)."""
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
        header = f'Bearer realm="http://{host}{UPSTREAM_PREFIX}{registry}/token",service="{registry}"'
        if name is None:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                     "detail": None}]}, [("WWW-Authenticate", header)]
        header += f',scope="repository:{name}:pull",error="insufficient_scope"'
        detail = [{"Type": "repository", "Class": "", "Name": name, "Action": "pull"}]
        return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required",
                                 "detail": detail}]}, [("WWW-Authenticate", header)]

    def authorized(self, environ, registry, name):
        scopes = self.bearer(environ, registry)
        return scopes is not None and f"repository:{name}:pull" in scopes

    def upstream_tags(self, environ, registry, name):
        if not self.authorized(environ, registry, name):
            return self.challenge(environ, registry, name)
        with self.lock:
            earlier = self.listings.get((registry, name), 0)
            self.listings[(registry, name)] = earlier + 1
        if earlier < self.upstream_throttled:
            return 429, {"errors": [UPSTREAM_ERRORS[429]]}, [("Retry-After", str(self.upstream_retry_after))]
        if earlier < self.upstream_throttled + self.upstream_unavailable:
            return 503, {"errors": [UPSTREAM_ERRORS[503]]}, []
        repository = self.catalog.repository(registry, name)
        if repository is None:
            return name_unknown(name)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            size = int(query.get("n", [self.upstream_page_size])[0])
            if size < 0:
                raise ValueError
        except ValueError:
            return 400, {"errors": [{"code": "PAGINATION_NUMBER_INVALID", "message": "invalid number of results "
                                     "requested", "detail": {"n": query["n"][0]}}]}, []
        size = min(size, self.upstream_max_page_size)
        tags = sorted(repository["tags"])
        if "last" in query:
            tags = [tag for tag in tags if tag > query["last"][0]]
        page = tags[:size]
        headers = []
        if page and len(tags) > len(page):
            link = (f"{UPSTREAM_PREFIX}{registry}/v2/{name}/tags/list?n={size}"
                    f"&last={quote(page[-1], safe='')}")
            headers.append(("Link", f'<{link}>; rel="next"'))
        return 200, {"name": name, "tags": page}, headers

    def upstream_manifest(self, environ, method, registry, name, reference):
        if not self.authorized(environ, registry, name):
            return self.challenge(environ, registry, name)
        repository = self.catalog.repository(registry, name)
        if repository is None:
            return name_unknown(name)
        found = (repository["digests"] if reference.startswith("sha256:") else repository["tags"]).get(reference)
        if found is None:
            return 404, {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown",
                                     "detail": {"Tag" if ":" not in reference else "Digest": reference}}]}, []
        # Docker Hub counts a GET of a manifest as a pull and a HEAD as none (its pulls page).
        # Whether a GET that finds no manifest counts is not documented: here it does not.
        if method == "GET" and not self.spend_pull(registry):
            return 429, {"errors": [PULL_LIMIT_ERROR]}, self.pull_limit_headers(registry)
        body, media_type, digest, _ = found
        return 200, body, [("Content-Type", media_type), ("Docker-Content-Digest", digest),
                           *self.pull_limit_headers(registry)]

    def spend_pull(self, registry):
        """Spends one manifest pull of a registry with a pull limit; False when none is left."""
        with self.lock:
            budget = self.pull_limits.get(registry)
            if budget is None:
                return True
            if budget["remaining"] <= 0:
                return False
            budget["remaining"] -= 1
            return True

    def pull_limit_headers(self, registry):
        """Docker Hub's ratelimit-limit and ratelimit-remaining headers, after this request."""
        with self.lock:
            budget = self.pull_limits.get(registry)
            if budget is None:
                return []
            window = budget["window"]
            return [("ratelimit-limit", f"{budget['limit']};w={window}"),
                    ("ratelimit-remaining", f"{budget['remaining']};w={window}")]

    # --- pull-through cache rules ---

    def create_rule(self, request, region):
        prefix = request["ecrRepositoryPrefix"]
        url = request["upstreamRegistryUrl"]
        if (region, prefix) in self.rules:
            raise EcrError(
                "PullThroughCacheRuleAlreadyExistsException",
                f"A pull-through cache rule with prefix '{prefix}' already exists",
            )
        rule = {
            "ecrRepositoryPrefix": prefix,
            "upstreamRegistryUrl": url,
            "createdAt": datetime.now(timezone.utc).timestamp(),
            "registryId": DEFAULT_ACCOUNT_ID,
            "upstreamRegistry": request.get("upstreamRegistry", upstream_name(url)),
            "upstreamRepositoryPrefix": request.get("upstreamRepositoryPrefix", "ROOT"),
        }
        if "credentialArn" in request:
            rule["credentialArn"] = request["credentialArn"]
        self.rules[(region, prefix)] = rule
        return rule

    def describe_rules(self, request, region):
        wanted = request.get("ecrRepositoryPrefixes")
        rules = [r for (reg, p), r in sorted(self.rules.items()) if reg == region and (not wanted or p in wanted)]
        if wanted and len(rules) < len(wanted):
            raise EcrError("PullThroughCacheRuleNotFoundException", "The pull-through cache rule does not exist")
        start = int(request.get("nextToken") or 0)
        size = int(request.get("maxResults") or 100)
        answer = {"pullThroughCacheRules": rules[start:start + size]}
        if start + size < len(rules):
            answer["nextToken"] = str(start + size)
        return answer

    def delete_rule(self, request, region):
        rule = self.rules.pop((region, request["ecrRepositoryPrefix"]), None)
        if rule is None:
            raise EcrError(
                "PullThroughCacheRuleNotFoundException",
                f"The pull-through cache rule with prefix '{request['ecrRepositoryPrefix']}' does not exist",
            )
        return rule

    def validate_rule(self, request, region):
        prefix = request["ecrRepositoryPrefix"]
        rule = self.rules.get((region, prefix))
        if rule is None:
            raise EcrError(
                "PullThroughCacheRuleNotFoundException",
                f"The pull-through cache rule with prefix '{prefix}' does not exist",
            )
        credential = rule.get("credentialArn", "")
        failure = next((text for name, text in self.invalid_credentials.items()
                        if credential and (name == credential or name in credential)), None)
        answer = {k: v for k, v in rule.items() if k not in ("createdAt", "upstreamRegistry")}
        answer["isValid"] = failure is None
        if failure is not None:
            answer["failure"] = failure
        return answer

    # --- registry policy and repository creation templates ---

    def put_policy(self, request, region):
        text = request["policyText"]
        try:
            policy = json.loads(text)
            statements = policy["Statement"]
        except (ValueError, KeyError, TypeError):
            raise EcrError("InvalidParameterException", "Invalid parameter at 'PolicyText' failed to satisfy "
                           "constraint: 'Invalid registry policy provided'")
        for statement in statements if isinstance(statements, list) else [statements]:
            actions = statement.get("Action", [])
            for action in [actions] if isinstance(actions, str) else actions:
                if action not in REGISTRY_POLICY_ACTIONS:
                    raise EcrError("InvalidParameterException", f"Invalid parameter at 'PolicyText' failed to "
                                   f"satisfy constraint: 'Invalid registry policy provided': action {action} "
                                   f"is not supported")
        self.policies[region] = text
        return {"registryId": DEFAULT_ACCOUNT_ID, "policyText": text}

    def get_policy(self, request, region):
        if region not in self.policies:
            raise EcrError("RegistryPolicyNotFoundException",
                           f"Registry policy does not exist in the registry with id '{DEFAULT_ACCOUNT_ID}'")
        return {"registryId": DEFAULT_ACCOUNT_ID, "policyText": self.policies[region]}

    def delete_policy(self, request, region):
        answer = self.get_policy(request, region)
        del self.policies[region]
        return answer

    def create_template(self, request, region):
        prefix = request["prefix"]
        if (region, prefix) in self.templates:
            raise EcrError("TemplateAlreadyExistsException",
                           f"The repository creation template with prefix '{prefix}' already exists")
        if not request.get("appliedFor"):
            raise EcrError("InvalidParameterException", "appliedFor must have at least one entry")
        now = datetime.now(timezone.utc).timestamp()
        template = {
            "prefix": prefix,
            "encryptionConfiguration": {"encryptionType": "AES256"},
            "imageTagMutability": "MUTABLE",
            "resourceTags": [],
            **{k: v for k, v in request.items() if k != "registryId"},
            "createdAt": now,
            "updatedAt": now,
        }
        self.templates[(region, prefix)] = template
        return {"registryId": DEFAULT_ACCOUNT_ID, "repositoryCreationTemplate": template}

    def describe_templates(self, request, region):
        wanted = request.get("prefixes")
        templates = [t for (reg, p), t in sorted(self.templates.items()) if reg == region and (not wanted or p in wanted)]
        start = int(request.get("nextToken") or 0)
        size = int(request.get("maxResults") or 100)
        answer = {"registryId": DEFAULT_ACCOUNT_ID, "repositoryCreationTemplates": templates[start:start + size]}
        if start + size < len(templates):
            answer["nextToken"] = str(start + size)
        return answer

    def delete_template(self, request, region):
        template = self.templates.pop((region, request["prefix"]), None)
        if template is None:
            raise EcrError("TemplateNotFoundException",
                           f"The repository creation template with prefix '{request['prefix']}' does not exist")
        return {"registryId": DEFAULT_ACCOUNT_ID, "repositoryCreationTemplate": template}

    def template_for(self, repository, region):
        """The template that applies to a repository the cache creates: its prefix's, else ROOT's."""
        found = [t for (reg, p), t in self.templates.items()
                 if reg == region and "PULL_THROUGH_CACHE" in t.get("appliedFor", [])
                 and (p == "ROOT" or repository.startswith(p.rstrip("/") + "/"))]
        found.sort(key=lambda t: -1 if t["prefix"] == "ROOT" else len(t["prefix"]))
        return found[-1] if found else None

    def rule_for(self, repository, region):
        """The rule whose prefix covers the repository, and the upstream path."""
        best = None
        for (reg, prefix), rule in self.rules.items():
            if reg != region:
                continue
            if prefix == "ROOT":
                rest = repository
            elif repository.startswith(prefix + "/"):
                rest = repository[len(prefix) + 1:]
            else:
                continue
            if best is None or best[0]["ecrRepositoryPrefix"] == "ROOT":
                best = (rule, rest)
        if best is None:
            return None
        rule, rest = best
        upstream_prefix = rule.get("upstreamRepositoryPrefix", "ROOT")
        path = rest if upstream_prefix == "ROOT" else f"{upstream_prefix}/{rest}"
        return rule, path

    # --- pulls through the cache ---

    def batch_get_image(self, request, region):
        name = request["repositoryName"]
        backend = ecr_backends[DEFAULT_ACCOUNT_ID][region]
        ids = request.get("imageIds") or []
        if not ids:
            raise EcrError("InvalidParameterException", "imageIds must have at least one entry")
        found = self.rule_for(name, region)
        if name not in backend.repositories:
            if found is None:
                raise not_found_repository(name)
            if any(name == d or name.startswith(d.rstrip("/") + "/") for d in self.denied):
                # A registry policy without ecr:CreateRepository for the namespace: ECR says
                # the repository does not exist although the rule covers it.
                raise not_found_repository(name)
            template = self.template_for(name, region) or {}
            backend.create_repository(name, None, template.get("encryptionConfiguration"), None,
                                      template.get("imageTagMutability", "MUTABLE"), [])
        repository = backend.repositories[name]
        images, failures = [], []
        for image_id in ids:
            tag, digest = image_id.get("imageTag"), image_id.get("imageDigest")
            if digest and find_image(repository, None, digest) is None:
                # Only a pull by tag fills the cache. A digest that is not cached yet is missing,
                # also when the id names a tag too: users report this of ECR (aws/containers-
                # roadmap #2837); the failureReason is the one ECR gives for a missing image.
                failures.append(failure(image_id, "ImageNotFound", IMAGE_NOT_FOUND))
                continue
            if found and tag and self.in_outage(name):
                # The upstream is down: a cached copy is still served (ECR user guide), an
                # uncached tag cannot be imported.
                if find_image(repository, tag, None) is None:
                    failures.append(failure(image_id, "UpstreamUnavailable", "The upstream registry is unavailable"))
                    continue
            elif found and tag:
                if self.fault("UpstreamUnavailable", self.unavailable_share, region, name, tag):
                    failures.append(failure(image_id, "UpstreamUnavailable", "The upstream registry is unavailable"))
                    continue
                refused = self.import_tag(backend, repository, found, tag, region)
                if refused is not None:
                    failures.append(failure(image_id, *refused))
                    continue
            image = find_image(repository, tag, digest)
            if image is None:
                failures.append(failure(image_id, "ImageNotFound", IMAGE_NOT_FOUND))
            elif digest and tag and image.get_image_digest() != digest:
                failures.append(failure(image_id, "ImageTagDoesNotMatchDigest", "Tag does not match digest"))
            else:
                self.pulled[(region, name, image.get_image_digest())] = time.time()
                images.append({
                    "registryId": DEFAULT_ACCOUNT_ID,
                    "repositoryName": name,
                    "imageId": {"imageTag": tag, "imageDigest": image.get_image_digest()} if tag
                    else {"imageDigest": image.get_image_digest()},
                    "imageManifest": image.image_manifest,
                    "imageManifestMediaType": image.image_manifest_media_type,
                })
        return {"images": images, "failures": failures}

    def import_tag(self, backend, repository, found, tag, region):
        """Imports or re-checks a tag, as a pull through the cache does. None, or the failure
        (code, reason) of a tag the cache could not import."""
        rule, path = found
        registry = rule["upstreamRegistryUrl"]
        key = (region, repository.name, tag)
        cached = find_image(repository, tag, None)
        last = self.checked.get(key)
        if cached is not None and last is not None and time.time() - last < self.recheck_seconds:
            return None
        self.checked[key] = time.time()
        # When the upstream check fails the cached copy is still served (ECR user guide).
        too_many = None if cached is not None else ("UpstreamTooManyRequests", UPSTREAM_TOO_MANY_REQUESTS)
        upstream = self.catalog.lookup(registry, path, tag)
        if upstream is None:
            return None  # absent upstream: a cached copy is still served, else ImageNotFound
        # The cache GETs the tag's manifest, on a first pull and on each re-check: a pull that the
        # registry counts against the rule's credential like anyone's.
        if not self.spend_pull(registry):
            return too_many
        body, media_type, digest, children = upstream
        if cached is not None and cached.get_image_digest() == digest:
            return None
        missing, pending, seen = [], list(children), set()
        while pending:
            child = pending.pop(0)
            if child[2] in seen or child[2] == digest or find_image(repository, None, child[2]) is not None:
                continue
            seen.add(child[2])
            missing.append(child)
            pending.extend(child[3])
        # Then each manifest of the index that is not cached yet, one GET each; nothing is stored
        # unless all of them could be fetched.
        for _ in missing:
            if not self.spend_pull(registry):
                return too_many
        for child_body, child_type, child_digest, _ in missing:
            backend.put_image(repository.name, child_body.decode(), None, child_type, child_digest)
        backend.put_image(repository.name, body.decode(), tag, media_type, digest)
        return None

    def get_download_url_for_layer(self, request, region):
        name, layer = request["repositoryName"], request["layerDigest"]
        backend = ecr_backends[DEFAULT_ACCOUNT_ID][region]
        repository = backend.repositories.get(name)
        if repository is None:
            raise not_found_repository(name)
        if not any(layer in layers_of(image.image_manifest) for image in repository.images):
            raise EcrError("LayersNotFoundException", f"The layer {layer} does not exist in repository {name}")
        now = time.monotonic()
        counted = self.layer_requests.setdefault((region, name, layer), [0, 0, now])
        earlier, answered, first = counted
        counted[0] += 1
        code, failing = self.layer_errors.get(layer, (None, 0))
        if code and earlier < failing:
            raise EcrError(code, LAYER_ERRORS[code])
        if draw(self.seed, "UnableToGetUpstreamLayerException", region, name, layer, earlier) < self.layer_error_share:
            code = "UnableToGetUpstreamLayerException"
            raise EcrError(code, LAYER_ERRORS[code])
        if layer in self.pending_layers:
            requests, seconds = self.pending_layers[layer]
        elif layer_share(layer) < self.pending_layer_share:
            requests, seconds = self.pending_requests, self.pending_seconds
        else:
            requests, seconds = 0, 0
        counted[1] += 1
        if answered < requests or now - first < seconds:
            found = self.rule_for(name, region)
            host, path = (found[0]["upstreamRegistryUrl"], found[1]) if found else ("upstream", name)
            return {"downloadUrl": f"https://{host}/v2/{path}/blobs/{layer}", "layerDigest": layer}
        hex_digest = layer.split(":", 1)[-1]
        url = (
            f"https://prod-{region}-starport-layer-bucket.s3.{region}.amazonaws.com/"
            f"{hex_digest[:4]}-{DEFAULT_ACCOUNT_ID}-{hex_digest[4:12]}/{hex_digest[12:48]}"
            f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600"
        )
        return {"downloadUrl": url, "layerDigest": layer}


def pending_layers(value, requests, seconds):
    """digest -> (requests, seconds) from a list of digests or a digest -> settings object."""
    if isinstance(value, list):
        return {digest: (requests, seconds) for digest in value}
    return {
        digest: (int(settings.get("requests", requests)), float(settings.get("seconds", seconds)))
        for digest, settings in value.items()
    }


def layer_errors(value):
    """digest -> (error code, how many first requests fail) from the layer_errors config."""
    errors = {}
    for digest, setting in value.items():
        code, requests = (setting, None) if isinstance(setting, str) else (setting["code"], setting.get("requests"))
        if code not in LAYER_ERRORS:
            raise ValueError(f"layer_errors {digest}: {code!r} is not one of {', '.join(sorted(LAYER_ERRORS))}")
        errors[digest] = (code, float("inf") if requests is None else int(requests))
    return errors


def find_image(repository, tag, digest):
    for image in repository.images:
        if tag is not None and tag in image.image_tags:
            return image
        if tag is None and digest is not None and image.get_image_digest() == digest:
            return image
    return None


def failure(image_id, code, reason):
    return {"imageId": image_id, "failureCode": code, "failureReason": reason}


def not_found_repository(name):
    return EcrError(
        "RepositoryNotFoundException",
        f"The repository with name '{name}' does not exist in the registry with id '{DEFAULT_ACCOUNT_ID}'",
    )


def region_of(environ):
    """The Region from the request's SigV4 credential scope."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    try:
        return authorization.split("Credential=", 1)[1].split("/")[2]
    except IndexError:
        return "us-east-1"


def respond(start_response, status, body):
    data = json.dumps(body, default=str).encode()
    reason = {200: "OK", 400: "Bad Request"}.get(status, "Error")
    start_response(f"{status} {reason}", [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", hashlib.md5(data).hexdigest()),
    ])
    return [data]


def basic_credential(environ):
    """"username:password" of a Basic Authorization header, or None."""
    scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def name_unknown(name):
    return 404, {"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known to registry",
                             "detail": {"name": name}}]}, []


def upstream_respond(start_response, status, body, headers=(), head=False):
    """A registry's answer: JSON, or a manifest's own bytes."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    names = {name.lower() for name, _ in headers}
    start_response(f"{status} {HTTPStatus(status).phrase}", [
        *([] if "content-type" in names else [("Content-Type", "application/json")]),
        ("Content-Length", str(len(data))),
        ("Docker-Distribution-API-Version", "registry/2.0"),
        *headers,
    ])
    return [b"" if head else data]


class QuietHandler(WSGIRequestHandler):
    """No access log line per request."""

    def log_request(self, *args, **kwargs):
        pass


def serve(config, host="127.0.0.1", port=0):
    """Starts the emulator in a thread; returns the server (server.port, server.shutdown())."""
    server = make_server(host, port, Emulator(config), threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=CONFIG_KEYS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--config", help="a JSON file with the keys rules, region, catalog, "
                        "recheck_interval_seconds, denied_namespaces, registry_policy, "
                        "repository_creation_templates, repositories, invalid_credentials, pending_layer_share, "
                        "pending_layer_requests, pending_layer_seconds, pending_layers, layer_errors, "
                        "faults (latency_ms, throttle_share, upstream_unavailable_share, "
                        "upstream_layer_error_share, upstream_outages, seed), upstream_credentials, upstream_page_size, "
                        "upstream_max_page_size, upstream_token_seconds, upstream_faults (throttle_requests, "
                        "retry_after_seconds, unavailable_requests), upstream_pull_limits (limit, remaining, "
                        "window_seconds), described below")
    parser.add_argument("--catalog", help="the upstream catalog (default: catalog.json beside this file)")
    parser.add_argument("--rule", action="append", default=[], metavar="PREFIX=UPSTREAM",
                        help="a pull-through cache rule to create at start; repeatable")
    args = parser.parse_args(argv)
    config = {}
    if args.config:
        with open(args.config) as f:
            config = json.load(f)
        base = os.path.dirname(os.path.abspath(args.config))
        if "catalog" in config:
            config["catalog"] = os.path.join(base, config["catalog"])
    if args.catalog:
        config["catalog"] = args.catalog
    for text in args.rule:
        prefix, _, upstream = text.partition("=")
        if not prefix or not upstream:
            parser.error(f"invalid --rule {text!r}: expected PREFIX=UPSTREAM")
        url, _, upstream_prefix = upstream.partition("/")
        rule = {"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": url}
        if upstream_prefix:
            rule["upstreamRepositoryPrefix"] = upstream_prefix
        config.setdefault("rules", []).append(rule)
    server = make_server(args.host, args.port, Emulator(config), threaded=True, request_handler=QuietHandler)
    print(f"ECR emulator listening on http://{args.host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
