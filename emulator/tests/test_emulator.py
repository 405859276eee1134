"""The emulator's pull-through cache behaviour, over HTTP with boto3, and its upstream registries' API
over HTTP with http.client."""

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import time

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import ecr_emulator  # noqa: E402

DOCKER_HUB = {"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}
NGINX = "docker-hub/library/nginx"
REDIS = "docker-hub/library/redis"
STORAGE = "https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def catalog(tmp_path):
    path = tmp_path / "catalog.json"
    shutil.copy(ecr_emulator.DEFAULT_CATALOG, path)
    return path


@pytest.fixture
def start(catalog):
    servers = []

    def start(**config):
        config.setdefault("rules", [DOCKER_HUB])
        config.setdefault("catalog", str(catalog))
        server = ecr_emulator.serve(config)
        servers.append(server)
        return boto3.client(
            "ecr",
            endpoint_url=f"http://127.0.0.1:{server.port}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    yield start
    for server in servers:
        server.shutdown()


def error_code(call):
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"]


def pull(ecr, repository, *tags):
    return ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": t} for t in tags])


def without_retries(ecr):
    """A client of the same emulator that makes every call once."""
    return boto3.client(
        "ecr",
        endpoint_url=ecr.meta.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def blobs(ecr, repository, tag):
    """The config blob and layers of a single-manifest tag, pulled through the cache."""
    manifest = json.loads(pull(ecr, repository, tag)["images"][0]["imageManifest"])
    return [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]


def where(ecr, repository, digest):
    """"upstream", "cached" or the error code of a GetDownloadUrlForLayer call."""
    try:
        url = ecr.get_download_url_for_layer(repositoryName=repository, layerDigest=digest)["downloadUrl"]
    except ClientError as error:
        return error.response["Error"]["Code"]
    if url.startswith(STORAGE):
        return "cached"
    assert url.startswith("https://registry-1.docker.io/v2/") and url.endswith(f"/blobs/{digest}"), url
    return "upstream"


def test_rules_are_created_listed_page_by_page_and_deleted(start):
    ecr = start(rules=[])
    for prefix, url in [("docker-hub", "registry-1.docker.io"), ("ecr-public", "public.ecr.aws"), ("quay", "quay.io")]:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl=url)
    assert error_code(lambda: ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")) == "PullThroughCacheRuleAlreadyExistsException"

    first = ecr.describe_pull_through_cache_rules(maxResults=2)
    second = ecr.describe_pull_through_cache_rules(maxResults=2, nextToken=first["nextToken"])
    assert "nextToken" not in second
    rules = first["pullThroughCacheRules"] + second["pullThroughCacheRules"]
    assert [(r["ecrRepositoryPrefix"], r["upstreamRegistry"]) for r in rules] == [
        ("docker-hub", "docker-hub"), ("ecr-public", "ecr-public"), ("quay", "quay")]
    assert all(r["upstreamRepositoryPrefix"] == "ROOT" for r in rules)

    ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="ecr-public")
    assert len(ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]) == 2
    assert error_code(lambda: ecr.delete_pull_through_cache_rule(
        ecrRepositoryPrefix="ecr-public")) == "PullThroughCacheRuleNotFoundException"


def test_first_pull_imports_a_multi_arch_index_with_its_platforms_and_attestation(start):
    ecr = start()
    assert error_code(lambda: ecr.describe_images(repositoryName=NGINX)) == "RepositoryNotFoundException"
    answer = pull(ecr, NGINX, "1.27")
    assert answer["failures"] == []
    image = answer["images"][0]
    manifest = image["imageManifest"]
    assert image["imageId"]["imageDigest"] == "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    index = json.loads(manifest)
    assert image["imageManifestMediaType"] == index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = [m["platform"]["architecture"] for m in index["manifests"]]
    assert platforms == ["amd64", "arm64", "unknown"]
    attestation = index["manifests"][2]
    assert attestation["annotations"]["vnd.docker.reference.digest"] == index["manifests"][0]["digest"]

    details = ecr.describe_images(repositoryName=NGINX)["imageDetails"]
    assert len(details) == 4, "the index and the three manifests it lists"
    for entry in index["manifests"]:
        child = ecr.batch_get_image(repositoryName=NGINX, imageIds=[{"imageDigest": entry["digest"]}])["images"][0]
        body = child["imageManifest"].encode()
        assert len(body) == entry["size"]
        assert "sha256:" + hashlib.sha256(body).hexdigest() == entry["digest"]
    sizes = [layer["size"] for layer in json.loads(child_manifest(ecr, index, 0))["layers"]]
    assert max(sizes) > 10_000_000, "realistic layer sizes"


def child_manifest(ecr, index, position):
    digest = index["manifests"][position]["digest"]
    return ecr.batch_get_image(repositoryName=NGINX, imageIds=[{"imageDigest": digest}])["images"][0]["imageManifest"]


def move_tag(catalog):
    """Changes the image of nginx:1.26 upstream."""
    data = json.loads(catalog.read_text())
    data["registry-1.docker.io"]["library/nginx"]["tags"]["1.26"]["layers"][0]["size"] += 1
    catalog.write_text(json.dumps(data))
    os.utime(catalog, ns=(time.time_ns(), time.time_ns() + 1_000_000))


def test_a_tag_moved_upstream_is_refreshed_on_the_next_pull(start, catalog):
    ecr = start(recheck_interval_seconds=0)
    before = pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"]
    move_tag(catalog)
    after = pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"]
    assert after != before
    tagged = ecr.describe_images(repositoryName=NGINX, imageIds=[{"imageTag": "1.26"}])["imageDetails"][0]
    assert tagged["imageDigest"] == after


def test_by_default_a_cached_tag_is_checked_upstream_again_only_after_24_hours(start, catalog, monkeypatch):
    ecr = start()
    before = pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"]
    move_tag(catalog)
    assert pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"] == before
    # Pulled a day later, the tag is checked again and refreshed.
    now = time.time()
    monkeypatch.setattr(ecr_emulator.time, "time", lambda: now + 86400)
    assert pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"] != before


def test_absent_upstream_is_image_not_found_and_a_cached_copy_is_still_served(start, catalog):
    ecr = start(recheck_interval_seconds=0)
    answer = pull(ecr, NGINX, "0.0-missing", "1.26")
    assert [f["failureCode"] for f in answer["failures"]] == ["ImageNotFound"]
    assert answer["failures"][0]["imageId"] == {"imageTag": "0.0-missing"}
    data = json.loads(catalog.read_text())
    del data["registry-1.docker.io"]["library/nginx"]["tags"]["1.26"]
    catalog.write_text(json.dumps(data))
    os.utime(catalog, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert pull(ecr, NGINX, "1.26")["failures"] == []


def upstream_digest(ecr, tag, name="library/nginx", registry="registry-1.docker.io"):
    token = token_for(ecr, registry, name)
    answer = http_get(f"{upstream(ecr, registry)}/v2/{name}/manifests/{tag}", token, method="HEAD")
    assert answer.status == 200, answer.body
    return answer.headers["Docker-Content-Digest"]


def test_an_uncached_digest_is_missing_also_with_its_tag_until_the_tag_is_pulled(start):
    ecr = start()
    digest = upstream_digest(ecr, "1.26")
    for image_id in ({"imageTag": "1.26", "imageDigest": digest}, {"imageDigest": digest}):
        answer = ecr.batch_get_image(repositoryName=NGINX, imageIds=[image_id])
        assert answer["images"] == []
        assert answer["failures"] == [
            {"imageId": image_id, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"}]
    assert ecr.describe_images(repositoryName=NGINX)["imageDetails"] == [], "nothing imported"

    assert pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"] == digest
    both = ecr.batch_get_image(repositoryName=NGINX, imageIds=[{"imageTag": "1.26", "imageDigest": digest}])
    assert both["failures"] == []
    assert both["images"][0]["imageId"] == {"imageTag": "1.26", "imageDigest": digest}
    alone = ecr.batch_get_image(repositoryName=NGINX, imageIds=[{"imageDigest": digest}])
    assert alone["images"][0]["imageId"] == {"imageDigest": digest}

    # A cached digest with a tag that points elsewhere.
    other = pull(ecr, NGINX, "1.27")["images"][0]["imageId"]["imageDigest"]
    wrong = ecr.batch_get_image(repositoryName=NGINX, imageIds=[{"imageTag": "1.26", "imageDigest": other}])
    assert [f["failureCode"] for f in wrong["failures"]] == ["ImageTagDoesNotMatchDigest"]


def test_a_digest_pull_does_not_fill_the_cache(start):
    ecr = start()
    digest = pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"]
    other = "docker-hub/library/alpine"
    ecr.create_repository(repositoryName=other)
    answer = ecr.batch_get_image(repositoryName=other, imageIds=[{"imageDigest": digest}])
    assert answer["failures"][0]["failureCode"] == "ImageNotFound"
    answer = ecr.batch_get_image(repositoryName=NGINX, imageIds=[{"imageDigest": digest}])
    assert answer["images"][0]["imageId"] == {"imageDigest": digest}


def test_a_denied_namespace_looks_like_a_missing_repository(start):
    ecr = start(denied_namespaces=["docker-hub/bitnami"])
    assert error_code(lambda: pull(ecr, "docker-hub/bitnami/redis", "7")) == "RepositoryNotFoundException"
    assert error_code(lambda: ecr.describe_images(repositoryName="docker-hub/bitnami/redis")) == "RepositoryNotFoundException"
    assert pull(ecr, "docker-hub/library/redis", "7")["failures"] == []


def test_no_rule_no_import(start):
    ecr = start()
    assert error_code(lambda: pull(ecr, "quay/prometheus/node-exporter", "v1.8.2")) == "RepositoryNotFoundException"


def test_upstream_repository_prefix_and_other_upstreams(start):
    ecr = start(rules=[
        {"ecrRepositoryPrefix": "my-app", "upstreamRegistryUrl": "registry-1.docker.io", "upstreamRepositoryPrefix": "library"},
        {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io"},
    ])
    assert pull(ecr, "my-app/alpine", "3.20")["failures"] == []
    assert pull(ecr, "quay/prometheus/node-exporter", "v1.8.2")["failures"] == []


def test_layers_come_from_ecr_storage_and_some_first_from_upstream(start):
    ecr = start(pending_layer_share=1.0)
    manifest = json.loads(pull(ecr, NGINX, "1.26")["images"][0]["imageManifest"])
    layer = manifest["layers"][0]["digest"]
    first = ecr.get_download_url_for_layer(repositoryName=NGINX, layerDigest=layer)["downloadUrl"]
    assert first == f"https://registry-1.docker.io/v2/library/nginx/blobs/{layer}"
    then = ecr.get_download_url_for_layer(repositoryName=NGINX, layerDigest=layer)["downloadUrl"]
    assert then.startswith("https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/")
    assert error_code(lambda: ecr.get_download_url_for_layer(
        repositoryName=NGINX, layerDigest="sha256:" + "0" * 64)) == "LayersNotFoundException"


def test_faults_throttle_fail_upstream_and_slow_down(start):
    throttled = start(faults={"throttle_share": 1.0})
    throttled.meta.events.register("needs-retry.*", lambda **kwargs: None)
    assert error_code(lambda: pull(throttled, NGINX, "1.26")) == "ThrottlingException"

    unavailable = start(faults={"upstream_unavailable_share": 1.0})
    answer = pull(unavailable, NGINX, "1.26", "1.27")
    assert [f["failureCode"] for f in answer["failures"]] == ["UpstreamUnavailable", "UpstreamUnavailable"]

    slow = start(faults={"latency_ms": 200})
    started = time.monotonic()
    pull(slow, NGINX, "1.26")
    assert time.monotonic() - started >= 0.2


def test_an_outage_window_fails_uncached_tags_and_serves_cached_ones(start):
    ecr = start(faults={"upstream_outages": [{"from_s": 1, "to_s": 2, "repositories": ["docker-hub/library"]}]},
                recheck_interval_seconds=0)
    assert pull(ecr, NGINX, "1.26")["failures"] == []
    time.sleep(1.1)
    answer = pull(ecr, NGINX, "1.26", "1.27")
    assert [i["imageId"]["imageTag"] for i in answer["images"]] == ["1.26"], "the cached tag is served"
    assert [f["failureCode"] for f in answer["failures"]] == ["UpstreamUnavailable"]
    time.sleep(1)
    assert pull(ecr, NGINX, "1.27")["failures"] == [], "the outage ended"


def test_other_calls_are_moto_s(start):
    ecr = start()
    ecr.create_repository(repositoryName="team/app")
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["team/app"]


def test_pending_layers_stay_pending_for_n_requests_per_repository(start):
    ecr = start(pending_layer_share=1.0, pending_layer_requests=2, rules=[DOCKER_HUB, {
        "ecrRepositoryPrefix": "my-app", "upstreamRegistryUrl": "registry-1.docker.io",
        "upstreamRepositoryPrefix": "library"}])
    layer = blobs(ecr, NGINX, "1.26")[1]
    assert [where(ecr, NGINX, layer) for _ in range(3)] == ["upstream", "upstream", "cached"]
    # The same layer in another repository is counted on its own, with that repository's upstream.
    assert blobs(ecr, "my-app/nginx", "1.26")[1] == layer
    url = ecr.get_download_url_for_layer(repositoryName="my-app/nginx", layerDigest=layer)["downloadUrl"]
    assert url == f"https://registry-1.docker.io/v2/library/nginx/blobs/{layer}"
    assert [where(ecr, "my-app/nginx", layer) for _ in range(2)] == ["upstream", "cached"]


def test_pending_layers_stay_pending_for_some_seconds(start):
    ecr = start(pending_layer_share=1.0, pending_layer_seconds=1.5)
    layer = blobs(ecr, NGINX, "1.26")[0]
    assert [where(ecr, NGINX, layer) for _ in range(3)] == ["upstream"] * 3
    time.sleep(1.6)
    assert where(ecr, NGINX, layer) == "cached"


def test_requests_and_seconds_must_both_run_out(start):
    ecr = start(pending_layer_share=1.0, pending_layer_requests=3, pending_layer_seconds=1)
    config, layer = blobs(ecr, NGINX, "1.26")[:2]
    assert [where(ecr, NGINX, config) for _ in range(4)] == ["upstream"] * 4
    assert where(ecr, NGINX, layer) == "upstream"
    time.sleep(1.1)
    assert where(ecr, NGINX, config) == "cached"
    assert [where(ecr, NGINX, layer) for _ in range(3)] == ["upstream", "upstream", "cached"]


def test_explicit_pending_layers_whatever_the_share(start):
    digests = blobs(start(), NGINX, "1.26")
    config, first, second, third = digests[:4]
    ecr = start(pending_layers=[first])
    assert [where(ecr, NGINX, d) for d in blobs(ecr, NGINX, "1.26")] == ["cached", "upstream"] + ["cached"] * 6
    assert where(ecr, NGINX, first) == "cached", "pending for pending_layer_requests (1) requests"

    ecr = start(pending_layer_share=1.0, pending_layers={
        config: {"requests": 0, "seconds": 0},
        first: {"requests": 2},
        second: {"requests": 10**9},
        third: {"seconds": 1.5},
    })
    blobs(ecr, NGINX, "1.26")
    assert [where(ecr, NGINX, config) for _ in range(2)] == ["cached", "cached"], "exempt from the share"
    assert [where(ecr, NGINX, first) for _ in range(3)] == ["upstream", "upstream", "cached"]
    assert [where(ecr, NGINX, second) for _ in range(20)] == ["upstream"] * 20, "pending for ever"
    assert [where(ecr, NGINX, third) for _ in range(2)] == ["upstream", "upstream"]
    time.sleep(1.6)
    assert where(ecr, NGINX, third) == "cached"
    assert [where(ecr, NGINX, digests[4]) for _ in range(2)] == ["upstream", "cached"], "the share, as before"


def test_layer_errors_for_chosen_layers(start):
    config, first, second, third = blobs(start(), NGINX, "1.26")[:4]
    ecr = start(layer_errors={
        first: "LayerInaccessibleException",
        second: "LayersNotFoundException",
        third: {"code": "UnableToGetUpstreamLayerException", "requests": 2},
    }, pending_layers=[third])
    blobs(ecr, NGINX, "1.26")
    with pytest.raises(ClientError) as raised:
        ecr.get_download_url_for_layer(repositoryName=NGINX, layerDigest=first)
    assert raised.value.response["Error"]["Message"] == (
        "The specified layer is not available because it is not associated with an image. "
        "Unassociated image layers may be cleaned up at any time.")
    assert [where(ecr, NGINX, first) for _ in range(2)] == ["LayerInaccessibleException"] * 2
    assert [where(ecr, NGINX, second) for _ in range(2)] == ["LayersNotFoundException"] * 2
    with pytest.raises(ClientError) as raised:
        ecr.get_download_url_for_layer(repositoryName=NGINX, layerDigest=third)
    assert raised.value.response["Error"]["Message"] == (
        "Error encountered while getting the upstream layer matching the pull through cache rule.")
    assert [where(ecr, NGINX, third) for _ in range(3)] == [
        "UnableToGetUpstreamLayerException", "upstream", "cached"], "errors first, then pending, then cached"
    assert where(ecr, NGINX, config) == "cached"
    with pytest.raises(ValueError):
        ecr_emulator.Emulator({"layer_errors": {first: "ThrottlingException"}})


def test_a_share_of_upstream_layer_errors(start):
    ecr = start(faults={"upstream_layer_error_share": 1.0})
    digests = blobs(ecr, NGINX, "1.26")
    assert {where(ecr, NGINX, d) for d in digests} == {"UnableToGetUpstreamLayerException"}

    def answers(ecr):
        blobs(ecr, NGINX, "1.26")
        return [[where(ecr, NGINX, d) for _ in range(6)] for d in digests]

    half = answers(start(faults={"upstream_layer_error_share": 0.5, "seed": 3}))
    assert half == answers(start(faults={"upstream_layer_error_share": 0.5, "seed": 3}))
    assert half != answers(start(faults={"upstream_layer_error_share": 0.5, "seed": 4}))
    flat = [answer for layer in half for answer in layer]
    assert set(flat) == {"UnableToGetUpstreamLayerException", "cached"}
    assert all("cached" in layer for layer in half), "a retried layer gets through"


def test_a_docker_manifest_list_is_imported_with_both_platforms(start):
    ecr = start()
    image = pull(ecr, REDIS, "7.4")["images"][0]
    assert image["imageManifestMediaType"] == DOCKER_LIST
    listing = json.loads(image["imageManifest"])
    assert listing["mediaType"] == DOCKER_LIST and listing["schemaVersion"] == 2
    assert [(m["mediaType"], m["platform"]) for m in listing["manifests"]] == [
        (DOCKER_MANIFEST, {"architecture": "amd64", "os": "linux"}),
        (DOCKER_MANIFEST, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]
    assert len(ecr.describe_images(repositoryName=REDIS)["imageDetails"]) == 3, "the list and its two manifests"
    platforms = []
    for entry in listing["manifests"]:
        child = ecr.batch_get_image(repositoryName=REDIS, imageIds=[{"imageDigest": entry["digest"]}])["images"][0]
        body = child["imageManifest"].encode()
        assert (len(body), "sha256:" + hashlib.sha256(body).hexdigest()) == (entry["size"], entry["digest"])
        assert child["imageManifestMediaType"] == DOCKER_MANIFEST
        manifest = json.loads(body)
        assert manifest["mediaType"] == DOCKER_MANIFEST
        assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
        assert {layer["mediaType"] for layer in manifest["layers"]} == {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"}
        platforms.append([manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]])
    amd64, arm64 = platforms
    assert set(amd64[1:]) & set(arm64[1:]), "the platforms share a layer"
    assert amd64[0] != arm64[0]
    assert {where(ecr, REDIS, digest) for digest in amd64 + arm64} == {"cached"}
    # Another tag of the repository is unchanged: a single OCI manifest.
    assert pull(ecr, REDIS, "7")["images"][0]["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_faults_do_not_depend_on_the_order_of_requests(start):
    faults = {"throttle_share": 0.3, "upstream_unavailable_share": 0.3, "upstream_layer_error_share": 0.3,
              "seed": 7}
    images = [(NGINX, "1.26"), (NGINX, "1.27"), (REDIS, "7"), (REDIS, "7.4"), ("docker-hub/library/alpine", "3.20")]

    def until_pulled(ecr, repository, tag):
        answers = []
        while not answers or answers[-1] != "ok":
            try:
                failures = pull(ecr, repository, tag)["failures"]
                answers.append(failures[0]["failureCode"] if failures else "ok")
            except ClientError as error:
                answers.append(error.response["Error"]["Code"])
            assert len(answers) < 30, "a retried pull gets through"
        return answers

    def layer_answers(ecr, repository, digest):
        answers = []
        for _ in range(4):
            try:
                url = ecr.get_download_url_for_layer(repositoryName=repository, layerDigest=digest)["downloadUrl"]
                answers.append("cached" if url.startswith(STORAGE) else "upstream")
            except ClientError as error:
                answers.append(error.response["Error"]["Code"])
        return answers

    def run(order, workers):
        ecr = without_retries(start(faults=faults, pending_layer_share=0.3))
        with ThreadPoolExecutor(workers) as pool:
            pulls = dict(zip(order, pool.map(lambda image: until_pulled(ecr, *image), order)))
        plain = start()
        layers = sorted({(repository, digest) for repository, tag in images
                         for digest in layers_of_tag(plain, repository, tag)})
        if order != images:
            layers.reverse()
        with ThreadPoolExecutor(workers) as pool:
            answers = dict(zip(layers, pool.map(lambda layer: layer_answers(ecr, *layer), layers)))
        return pulls, answers

    one_by_one = run(images, 1)
    all_at_once = run(list(reversed(images)), len(images))
    assert one_by_one == all_at_once
    pulls, answers = one_by_one
    seen = {code for codes in pulls.values() for code in codes} | {a for codes in answers.values() for a in codes}
    assert {"ThrottlingException", "UpstreamUnavailable", "UnableToGetUpstreamLayerException", "upstream",
            "cached", "ok"} <= seen, seen


def layers_of_tag(ecr, repository, tag):
    """Every blob of every manifest of a tag, from an emulator without faults."""
    image = pull(ecr, repository, tag)["images"][0]
    manifest = json.loads(image["imageManifest"])
    manifests = [manifest]
    for entry in manifest.get("manifests", []):
        child = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageDigest": entry["digest"]}])
        manifests.append(json.loads(child["images"][0]["imageManifest"]))
    return [digest for m in manifests for digest in
            ([m["config"]["digest"]] if "config" in m else []) + [layer["digest"] for layer in m.get("layers", [])]]


PULL_THROUGH_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "PullThroughCache", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"],
        "Resource": "arn:aws:ecr:us-east-1:123456789012:repository/ecr-public/docker/*",
    }],
}


def test_the_registry_policy_takes_pull_through_cache_actions(start):
    ecr = start()
    assert error_code(lambda: ecr.get_registry_policy()) == "RegistryPolicyNotFoundException"
    text = json.dumps(PULL_THROUGH_POLICY)
    assert ecr.put_registry_policy(policyText=text)["policyText"] == text
    assert json.loads(ecr.get_registry_policy()["policyText"]) == PULL_THROUGH_POLICY
    refused = dict(PULL_THROUGH_POLICY, Statement=[dict(PULL_THROUGH_POLICY["Statement"][0], Action="ecr:PutImage")])
    assert error_code(lambda: ecr.put_registry_policy(policyText=json.dumps(refused))) == "InvalidParameterException"
    assert error_code(lambda: ecr.put_registry_policy(policyText="{not json")) == "InvalidParameterException"
    ecr.delete_registry_policy()
    assert error_code(lambda: ecr.get_registry_policy()) == "RegistryPolicyNotFoundException"

    configured = start(registry_policy=PULL_THROUGH_POLICY)
    assert json.loads(configured.get_registry_policy()["policyText"]) == PULL_THROUGH_POLICY


def test_a_rules_credential_is_validated(start):
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbC123"
    ecr = start(rules=[dict(DOCKER_HUB, credentialArn=secret),
                       {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io"}],
                invalid_credentials={"ecr-pullthroughcache/docker-hub": "the access token has expired"})
    answer = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="docker-hub")
    assert (answer["isValid"], answer["failure"], answer["credentialArn"]) == (
        False, "the access token has expired", secret)
    answer = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="quay")
    assert answer["isValid"] is True and "failure" not in answer
    assert answer["upstreamRegistryUrl"] == "quay.io"
    assert error_code(lambda: ecr.validate_pull_through_cache_rule(
        ecrRepositoryPrefix="ghcr")) == "PullThroughCacheRuleNotFoundException"


def test_repository_creation_templates_shape_the_cache_repositories(start):
    ecr = start(repository_creation_templates=[
        {"prefix": "ROOT", "appliedFor": ["PULL_THROUGH_CACHE"], "imageTagMutability": "IMMUTABLE"}])
    ecr.create_repository_creation_template(prefix="docker-hub/library", appliedFor=["REPLICATION"])
    assert error_code(lambda: ecr.create_repository_creation_template(
        prefix="ROOT", appliedFor=["PULL_THROUGH_CACHE"])) == "TemplateAlreadyExistsException"
    first = ecr.describe_repository_creation_templates(maxResults=1)
    second = ecr.describe_repository_creation_templates(maxResults=1, nextToken=first["nextToken"])
    templates = first["repositoryCreationTemplates"] + second["repositoryCreationTemplates"]
    assert [(t["prefix"], t["imageTagMutability"], t["appliedFor"]) for t in templates] == [
        ("ROOT", "IMMUTABLE", ["PULL_THROUGH_CACHE"]), ("docker-hub/library", "MUTABLE", ["REPLICATION"])]
    assert templates[1]["encryptionConfiguration"] == {"encryptionType": "AES256"}
    # The cache creates its repository as the ROOT template says (the other is for replication).
    pull(ecr, NGINX, "1.26")
    assert ecr.describe_repositories(repositoryNames=[NGINX])["repositories"][0]["imageTagMutability"] == "IMMUTABLE"
    ecr.delete_repository_creation_template(prefix="ROOT")
    assert [t["prefix"] for t in ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]] == [
        "docker-hub/library"]
    assert error_code(lambda: ecr.delete_repository_creation_template(prefix="ROOT")) == "TemplateNotFoundException"


def test_repositories_at_start_keep_their_tag_mutability(start):
    ecr = start(repositories=[{"repositoryName": "ecr-public/docker/library/redis", "imageTagMutability": "IMMUTABLE"},
                              {"repositoryName": "docker-hub/library/redis"}])
    found = {r["repositoryName"]: r["imageTagMutability"] for r in ecr.describe_repositories()["repositories"]}
    assert found == {"ecr-public/docker/library/redis": "IMMUTABLE", "docker-hub/library/redis": "MUTABLE"}


# --- the upstream registries' API (registry API v2) ---

NGINX_TAGS = [
    "1.25.5", "1.26", "1.26.0", "1.26.1", "1.26.2", "1.26.3", "1.27", "1.27.0", "1.27.0-alpine", "1.27.1",
    "1.27.1-alpine", "1.27.2", "1.27.2-alpine", "1.27.3", "1.27.3-alpine", "1.27.3-alpine-slim", "1.27.4-rc1",
    "1.28.0", "alpine", "latest", "mainline", "stable"]
NODE_EXPORTER_TAGS = ["latest", "master", "v1.7.0", "v1.8.0", "v1.8.1", "v1.8.2", "v1.9.0"]
APP_TAGS = ["1.9.0", "2.0.0", "2.1.0", "2.1.1", "3.0.0", "3.1.0-beta1", "latest"]
LOCAL = {"ecrRepositoryPrefix": "local", "upstreamRegistryUrl": "localhost:5000"}


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def http_get(url, token=None, basic=None, method="GET", host=None):
    """One request with http.client (no redirects, no retries, 4xx and 5xx answered as they are)."""
    parts = urlsplit(url)
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if basic:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
    if host:
        headers["Host"] = host
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def upstream(ecr, registry="registry-1.docker.io"):
    """The base URL of an upstream registry of the emulator that serves this client."""
    return f"{ecr.meta.endpoint_url}/upstream/{registry}"


def token_for(ecr, registry, *names, basic=None):
    scopes = "&".join(f"scope=repository:{name}:pull" for name in names)
    answer = http_get(f"{upstream(ecr, registry)}/token?service={registry}&{scopes}", basic=basic)
    assert answer.status == 200, answer.body
    return answer.json()["token"]


def list_all(ecr, registry, name, token, first_query=""):
    """Every page of a tag list, following the Link headers; the pages' tag lists."""
    url = f"{upstream(ecr, registry)}/v2/{name}/tags/list{first_query}"
    pages = []
    while url:
        answer = http_get(url, token)
        assert answer.status == 200, answer.body
        assert answer.json()["name"] == name
        pages.append(answer.json()["tags"])
        link = answer.headers.get("Link")
        if link is None:
            break
        target, _, relation = link.partition(";")
        assert relation.strip() == 'rel="next"' and target.startswith("<") and target.endswith(">"), link
        url = urljoin(url, target[1:-1])
    return pages


def test_upstream_v2_challenges_with_a_realm_built_from_the_host(start):
    ecr = start()
    port = urlsplit(ecr.meta.endpoint_url).port
    answer = http_get(f"{upstream(ecr)}/v2/")
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == (
        f'Bearer realm="http://127.0.0.1:{port}/upstream/registry-1.docker.io/token",service="registry-1.docker.io"')
    assert answer.json() == {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required", "detail": None}]}
    assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    behind = http_get(f"{upstream(ecr, 'localhost:5000')}/v2/", host="registry.test:8080")
    assert behind.headers["WWW-Authenticate"] == (
        'Bearer realm="http://registry.test:8080/upstream/localhost:5000/token",service="localhost:5000"')

    token = token_for(ecr, "registry-1.docker.io", "library/nginx")
    answer = http_get(f"{upstream(ecr)}/v2/", token)
    assert (answer.status, answer.json()) == (200, {})
    assert http_get(f"{upstream(ecr, 'quay.io')}/v2/", token).status == 401, "a token of another registry"
    assert http_get(f"{upstream(ecr)}/v2/", "not-a-token").status == 401
    assert http_get(f"{upstream(ecr, 'ghcr.io')}/v2/").status == 404, "not in the catalog"


def test_upstream_anonymous_token_for_a_pull_scope(start):
    ecr = start()
    answer = http_get(f"{upstream(ecr)}/token?service=registry-1.docker.io&scope=repository:library/nginx:pull")
    assert answer.status == 200
    body = answer.json()
    assert body["token"] == body["access_token"] and len(body["token"]) >= 20
    assert body["expires_in"] == 300
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["issued_at"]), body["issued_at"]
    assert token_for(ecr, "registry-1.docker.io", "library/nginx") != body["token"], "random"

    nginx = http_get(f"{upstream(ecr)}/v2/library/nginx/tags/list", body["token"])
    assert nginx.status == 200
    redis = http_get(f"{upstream(ecr)}/v2/library/redis/tags/list", body["token"])
    assert redis.status == 401, "the token's scope is nginx's"
    assert redis.headers["WWW-Authenticate"].endswith(
        ',service="registry-1.docker.io",scope="repository:library/redis:pull",error="insufficient_scope"')
    both = token_for(ecr, "registry-1.docker.io", "library/nginx", "library/redis")
    for name in ("library/nginx", "library/redis"):
        assert http_get(f"{upstream(ecr)}/v2/{name}/tags/list", both).status == 200
    spaced = http_get(f"{upstream(ecr)}/token?scope=repository:library/alpine:pull%20repository:library/redis:pull")
    assert http_get(f"{upstream(ecr)}/v2/library/alpine/tags/list", spaced.json()["token"]).status == 200

    unauthenticated = http_get(f"{upstream(ecr)}/v2/library/nginx/tags/list")
    assert unauthenticated.status == 401
    assert unauthenticated.headers["WWW-Authenticate"] == (
        f'Bearer realm="http://127.0.0.1:{urlsplit(ecr.meta.endpoint_url).port}/upstream/registry-1.docker.io/token",'
        'service="registry-1.docker.io",scope="repository:library/nginx:pull",error="insufficient_scope"')
    assert unauthenticated.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_upstream_tokens_expire(start):
    ecr = start(upstream_token_seconds=1)
    token = token_for(ecr, "quay.io", "prometheus/node-exporter")
    url = f"{upstream(ecr, 'quay.io')}/v2/prometheus/node-exporter/tags/list"
    assert http_get(url, token).status == 200
    time.sleep(1.1)
    assert http_get(url, token).status == 401


def test_upstream_credentials_are_required_and_checked(start):
    ecr = start(upstream_credentials={"localhost:5000": {"username": "team", "accessToken": "s3cret"}})
    token_url = f"{upstream(ecr, 'localhost:5000')}/token?service=localhost:5000&scope=repository:team/app:pull"
    for basic in (None, ("team", "wrong"), ("other", "s3cret")):
        answer = http_get(token_url, basic=basic)
        assert (answer.status, answer.json()) == (401, {"details": "incorrect username or password"}), basic
    answer = http_get(token_url, basic=("team", "s3cret"))
    assert answer.status == 200
    listed = http_get(f"{upstream(ecr, 'localhost:5000')}/v2/team/app/tags/list", answer.json()["token"])
    assert (listed.status, listed.json()) == (200, {"name": "team/app", "tags": APP_TAGS})
    # The other registries still give tokens to anyone.
    assert token_for(ecr, "quay.io", "prometheus/node-exporter")


def test_upstream_tags_are_listed_in_lexical_order_page_by_page(start):
    ecr = start()
    token = token_for(ecr, "registry-1.docker.io", "library/nginx")
    url = f"{upstream(ecr)}/v2/library/nginx/tags/list"
    everything = http_get(url, token)
    assert everything.json() == {"name": "library/nginx", "tags": NGINX_TAGS}
    assert NGINX_TAGS == sorted(NGINX_TAGS)
    assert "Link" not in everything.headers

    first = http_get(f"{url}?n=5", token)
    assert first.json()["tags"] == NGINX_TAGS[:5]
    assert first.headers["Link"] == (
        '</upstream/registry-1.docker.io/v2/library/nginx/tags/list?n=5&last=1.26.2>; rel="next"')
    after = http_get(f"{url}?n=3&last=1.27.2", token)
    assert after.json()["tags"] == ["1.27.2-alpine", "1.27.3", "1.27.3-alpine"]
    assert http_get(f"{url}?last=1.27.4", token).json()["tags"] == ["1.27.4-rc1", "1.28.0", "alpine", "latest",
                                                                    "mainline", "stable"]
    assert http_get(f"{url}?last=zzz", token).json()["tags"] == []

    for size in (1, 5, 7, 21, 22, 100):
        pages = list_all(ecr, "registry-1.docker.io", "library/nginx", token, f"?n={size}")
        assert [tag for page in pages for tag in page] == NGINX_TAGS, size
        assert len(pages) == -(-len(NGINX_TAGS) // size), "a Link until the last page, none after it"
        assert all(len(page) == size for page in pages[:-1])

    quay = token_for(ecr, "quay.io", "prometheus/node-exporter")
    assert list_all(ecr, "quay.io", "prometheus/node-exporter", quay, "?n=2") == [
        ["latest", "master"], ["v1.7.0", "v1.8.0"], ["v1.8.1", "v1.8.2"], ["v1.9.0"]]


def test_upstream_page_sizes_by_default_and_at_most(start):
    ecr = start(upstream_page_size=4, upstream_max_page_size=6)
    token = token_for(ecr, "registry-1.docker.io", "library/nginx")
    url = f"{upstream(ecr)}/v2/library/nginx/tags/list"
    answer = http_get(url, token)
    assert answer.json()["tags"] == NGINX_TAGS[:4]
    assert answer.headers["Link"].startswith("</upstream/registry-1.docker.io/v2/library/nginx/tags/list?n=4&last=")
    capped = http_get(f"{url}?n=1000", token)
    assert capped.json()["tags"] == NGINX_TAGS[:6]
    assert "?n=6&last=1.26.3>" in capped.headers["Link"]
    pages = list_all(ecr, "registry-1.docker.io", "library/nginx", token)
    assert [tag for page in pages for tag in page] == NGINX_TAGS and len(pages) == 6
    assert http_get(f"{url}?n=-1", token).status == 400


def test_upstream_unknown_repository_and_registry(start):
    ecr = start()
    token = token_for(ecr, "registry-1.docker.io", "library/missing")
    answer = http_get(f"{upstream(ecr)}/v2/library/missing/tags/list", token)
    assert (answer.status, answer.json()) == (404, {"errors": [{
        "code": "NAME_UNKNOWN", "message": "repository name not known to registry",
        "detail": {"name": "library/missing"}}]})
    assert http_get(f"{upstream(ecr, 'ghcr.io')}/v2/owner/image/tags/list", token).status == 404
    assert http_get(f"{upstream(ecr, 'ghcr.io')}/token?scope=repository:owner/image:pull").status == 404
    # The registry's path is not its repository's: nginx is library/nginx on Docker Hub.
    unqualified = token_for(ecr, "registry-1.docker.io", "nginx")
    assert http_get(f"{upstream(ecr)}/v2/nginx/tags/list", unqualified).status == 404


def test_upstream_throttles_then_is_unavailable_then_answers(start):
    ecr = start(upstream_faults={"throttle_requests": 2, "retry_after_seconds": 3, "unavailable_requests": 1})
    token = token_for(ecr, "registry-1.docker.io", "library/nginx", "library/redis")
    url = f"{upstream(ecr)}/v2/library/nginx/tags/list"
    assert http_get(url).status == 401, "without a token: not counted"
    answers = [http_get(url, token) for _ in range(5)]
    assert [a.status for a in answers] == [429, 429, 503, 200, 200]
    assert answers[0].headers["Retry-After"] == "3"
    assert answers[0].json() == {"errors": [{"code": "TOOMANYREQUESTS", "message": "rate limit exceeded"}]}
    assert answers[2].json() == {"errors": [{"code": "UNAVAILABLE", "message": "service unavailable"}]}
    assert "Retry-After" not in answers[2].headers
    assert answers[3].json()["tags"] == NGINX_TAGS
    # Each repository is counted on its own.
    redis = [http_get(f"{upstream(ecr)}/v2/library/redis/tags/list", token).status for _ in range(4)]
    assert redis == [429, 429, 503, 200]

    default = start(upstream_faults={"throttle_requests": 1})
    token = token_for(default, "quay.io", "prometheus/node-exporter")
    answer = http_get(f"{upstream(default, 'quay.io')}/v2/prometheus/node-exporter/tags/list", token)
    assert (answer.status, answer.headers["Retry-After"]) == (429, "1")


def test_upstream_request_log(start):
    ecr = start(upstream_credentials={"localhost:5000": {"username": "team", "accessToken": "s3cret"}})
    log_url = f"{ecr.meta.endpoint_url}/upstream/_requests"
    assert http_get(log_url).json() == []
    http_get(f"{upstream(ecr)}/v2/")
    token = token_for(ecr, "registry-1.docker.io", "library/nginx")
    http_get(f"{upstream(ecr)}/v2/library/nginx/tags/list?n=2&last=1.27", token)
    http_get(f"{upstream(ecr, 'localhost:5000')}/token?scope=repository:team/app:pull", basic=("team", "s3cret"))
    pull(ecr, NGINX, "1.26")  # an ECR call: not an upstream request
    answer = http_get(log_url)
    assert answer.status == 200
    assert answer.json() == [
        {"registry": "registry-1.docker.io", "method": "GET", "path": "/v2/", "query": "", "auth": "none",
         "status": 401},
        {"registry": "registry-1.docker.io", "method": "GET", "path": "/token",
         "query": "service=registry-1.docker.io&scope=repository:library/nginx:pull", "auth": "none", "status": 200},
        {"registry": "registry-1.docker.io", "method": "GET", "path": "/v2/library/nginx/tags/list",
         "query": "n=2&last=1.27", "auth": "bearer", "status": 200},
        {"registry": "localhost:5000", "method": "GET", "path": "/token", "query": "scope=repository:team/app:pull",
         "auth": "basic", "status": 200},
    ]
    assert token not in answer.body.decode() and "s3cret" not in answer.body.decode()
    assert http_get(log_url, method="DELETE").status == 200
    assert http_get(log_url).json() == []


def test_upstream_manifests_are_what_the_cache_imports(start):
    ecr = start()
    token = token_for(ecr, "registry-1.docker.io", "library/nginx")
    answer = http_get(f"{upstream(ecr)}/v2/library/nginx/manifests/1.27.2", token)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    digest = answer.headers["Docker-Content-Digest"]
    assert digest == "sha256:" + hashlib.sha256(answer.body).hexdigest()
    image = pull(ecr, NGINX, "1.27.2")["images"][0]
    assert (image["imageId"]["imageDigest"], image["imageManifest"].encode()) == (digest, answer.body)
    child = json.loads(answer.body)["manifests"][1]["digest"]
    by_digest = http_get(f"{upstream(ecr)}/v2/library/nginx/manifests/{child}", token, method="HEAD")
    assert (by_digest.status, by_digest.headers["Docker-Content-Digest"], by_digest.body) == (200, child, b"")
    assert http_get(f"{upstream(ecr)}/v2/library/nginx/manifests/9.99", token).json()["errors"][0]["code"] == (
        "MANIFEST_UNKNOWN")
    assert http_get(f"{upstream(ecr)}/v2/library/nginx/manifests/1.27.2").status == 401


def test_listed_tags_are_pulled_through_the_cache(start):
    ecr = start()
    token = token_for(ecr, "registry-1.docker.io", "library/nginx")
    tags = http_get(f"{upstream(ecr)}/v2/library/nginx/tags/list", token).json()["tags"]
    failed = pull(ecr, NGINX, *tags)["failures"]
    assert failed == [], "every listed tag can be pulled"
    digests = {}
    for tag in tags:
        digests[tag] = ecr.describe_images(repositoryName=NGINX, imageIds=[{"imageTag": tag}])["imageDetails"][0][
            "imageDigest"]
    # An alias is the image of its tag: one image, several tags.
    assert digests["1.27.3"] == digests["1.27"] == digests["latest"] == digests["mainline"]
    assert digests["stable"] == digests["1.26.3"] == digests["1.26"]
    assert len({digests[f"1.27.{patch}"] for patch in range(4)}) == 4
    for patch in range(4):
        index = json.loads(pull(ecr, NGINX, f"1.27.{patch}")["images"][0]["imageManifest"])
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        assert [m["platform"]["architecture"] for m in index["manifests"]][:2] == ["amd64", "arm64"]
        for entry in index["manifests"]:
            child = ecr.batch_get_image(repositoryName=NGINX, imageIds=[{"imageDigest": entry["digest"]}])
            assert child["images"], f"1.27.{patch}'s {entry['platform']} is in the cache"
    cached = ecr.describe_images(repositoryName=NGINX, imageIds=[{"imageTag": "1.27.3"}])["imageDetails"][0]
    assert {"1.27", "1.27.3", "latest", "mainline"} <= set(cached["imageTags"])


def test_a_localhost_5000_rule_pulls_what_that_registry_lists(start):
    ecr = start(rules=[])
    rule = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="local", upstreamRegistryUrl="localhost:5000")
    assert (rule["upstreamRegistryUrl"], rule["upstreamRegistry"]) == ("localhost:5000", "docker-hub")
    token = token_for(ecr, "localhost:5000", "team/app")
    listed = http_get(f"{upstream(ecr, 'localhost:5000')}/v2/team/app/tags/list", token).json()["tags"]
    assert listed == APP_TAGS
    upstream_digest = http_get(f"{upstream(ecr, 'localhost:5000')}/v2/team/app/manifests/2.1.1", token).headers[
        "Docker-Content-Digest"]
    answer = pull(ecr, "local/team/app", "2.1.1")
    assert answer["failures"] == []
    assert answer["images"][0]["imageId"] == {"imageTag": "2.1.1", "imageDigest": upstream_digest}
    assert pull(ecr, "local/team/app", "latest")["images"][0]["imageId"]["imageDigest"] == (
        pull(ecr, "local/team/app", "3.0.0")["images"][0]["imageId"]["imageDigest"])
    assert pull(ecr, "local/team/app", "9.9.9")["failures"][0]["failureCode"] == "ImageNotFound"

    configured = start(rules=[LOCAL])
    rules = configured.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert [(r["ecrRepositoryPrefix"], r["upstreamRegistryUrl"]) for r in rules] == [("local", "localhost:5000")]
    assert pull(configured, "local/team/app", "2.1.1")["images"][0]["imageId"]["imageDigest"] == upstream_digest


def test_the_catalog_lists_the_tags_that_selectors_choose_from(start):
    ecr = start()
    for registry, name, expected in [("registry-1.docker.io", "library/nginx", NGINX_TAGS),
                                     ("quay.io", "prometheus/node-exporter", NODE_EXPORTER_TAGS),
                                     ("localhost:5000", "team/app", APP_TAGS)]:
        token = token_for(ecr, registry, name)
        assert http_get(f"{upstream(ecr, registry)}/v2/{name}/tags/list", token).json()["tags"] == expected
    # The tags that were there before are still there.
    for registry, name, tag in [("registry-1.docker.io", "library/redis", "7.4"),
                                ("registry-1.docker.io", "library/alpine", "3.20"),
                                ("public.ecr.aws", "docker/library/redis", "7"),
                                ("registry.k8s.io", "pause", "3.10")]:
        token = token_for(ecr, registry, name)
        assert tag in http_get(f"{upstream(ecr, registry)}/v2/{name}/tags/list", token).json()["tags"]


def test_catalog_aliases(tmp_path):
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}
    loaded = ecr_emulator.load_catalog({"r": {"a": {"tags": {"1": manifest, "one": "1", "uno": "one"}}}})
    tags = loaded["r"]["a"]["tags"]
    assert tags["uno"] == tags["one"] == tags["1"]
    assert set(loaded["r"]["a"]["digests"]) == {tags["1"][2]}
    for broken in ({"one": "missing"}, {"one": "two", "two": "one"}, {"one": "one"}):
        with pytest.raises(ValueError):
            ecr_emulator.load_catalog({"r": {"a": {"tags": broken}}})


# --- pull limits (Docker Hub's) and when images were pushed and pulled ---

def limits(answer):
    return answer.headers.get("ratelimit-limit"), answer.headers.get("ratelimit-remaining")


def test_upstream_pull_limits_a_get_spends_a_pull_a_head_does_not(start):
    ecr = start(upstream_pull_limits={"registry-1.docker.io": {"limit": 100, "remaining": 2}})
    token = token_for(ecr, "registry-1.docker.io", "library/nginx")
    url = f"{upstream(ecr)}/v2/library/nginx/manifests"
    head = http_get(f"{url}/1.26", token, method="HEAD")
    assert (head.status, limits(head)) == (200, ("100;w=21600", "2;w=21600"))
    assert (head.headers["Content-Type"], head.body) == ("application/vnd.oci.image.manifest.v1+json", b"")
    get = http_get(f"{url}/1.26", token)
    assert (get.status, limits(get)) == (200, ("100;w=21600", "1;w=21600"))
    assert get.headers["Docker-Content-Digest"] == head.headers["Docker-Content-Digest"]
    by_digest = http_get(f"{url}/{get.headers['Docker-Content-Digest']}", token)
    assert (by_digest.status, by_digest.body, limits(by_digest)) == (200, get.body, ("100;w=21600", "0;w=21600"))
    assert http_get(f"{url}/9.99", token).status == 404, "a missing manifest is not a pull"

    refused = http_get(f"{url}/1.27", token)
    assert (refused.status, limits(refused)) == (429, ("100;w=21600", "0;w=21600"))
    assert refused.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert "pull rate limit" in refused.json()["errors"][0]["message"]
    still = http_get(f"{url}/1.27", token, method="HEAD")
    assert (still.status, limits(still)) == (200, ("100;w=21600", "0;w=21600")), "a HEAD is answered at 0 too"

    # Another registry, not listed: unlimited, no headers.
    quay = token_for(ecr, "quay.io", "prometheus/node-exporter")
    answer = http_get(f"{upstream(ecr, 'quay.io')}/v2/prometheus/node-exporter/manifests/v1.8.2", quay)
    assert (answer.status, limits(answer)) == (200, (None, None))


def test_upstream_pull_limits_window_and_remaining_default(start):
    ecr = start(upstream_pull_limits={"quay.io": {"limit": 3, "window_seconds": 3600}})
    token = token_for(ecr, "quay.io", "prometheus/node-exporter")
    answer = http_get(f"{upstream(ecr, 'quay.io')}/v2/prometheus/node-exporter/manifests/v1.8.2", token)
    assert limits(answer) == ("3;w=3600", "2;w=3600")


def remaining(ecr):
    token = token_for(ecr, "registry-1.docker.io", "library/nginx")
    return http_get(f"{upstream(ecr)}/v2/library/nginx/manifests/1.26", token, method="HEAD").headers[
        "ratelimit-remaining"]


def test_the_caches_imports_spend_the_pull_limit(start, catalog):
    ecr = start(upstream_pull_limits={"registry-1.docker.io": {"limit": 100, "remaining": 6}},
                recheck_interval_seconds=0)
    # nginx:1.27 is an index of two platforms and an attestation: four manifest GETs.
    assert pull(ecr, NGINX, "1.27")["failures"] == []
    assert remaining(ecr) == "2;w=21600"
    # A re-check of an unchanged tag GETs the tag's manifest only.
    assert pull(ecr, NGINX, "1.27")["failures"] == []
    assert remaining(ecr) == "1;w=21600"
    # Pulls by digest of cached images come from the cache.
    index = json.loads(pull(ecr, NGINX, "1.27")["images"][0]["imageManifest"])
    assert remaining(ecr) == "0;w=21600"
    child = ecr.batch_get_image(repositoryName=NGINX, imageIds=[{"imageDigest": index["manifests"][0]["digest"]}])
    assert child["failures"] == []

    answer = pull(ecr, NGINX, "1.26", "1.27")
    assert answer["failures"] == [{"imageId": {"imageTag": "1.26"}, "failureCode": "UpstreamTooManyRequests",
                                   "failureReason": ecr_emulator.UPSTREAM_TOO_MANY_REQUESTS}]
    assert [i["imageId"]["imageTag"] for i in answer["images"]] == ["1.27"], "the cached copy is still served"
    assert error_code(lambda: ecr.describe_images(repositoryName=NGINX, imageIds=[{"imageTag": "1.26"}])) == (
        "ImageNotFoundException")


def test_an_index_whose_platforms_exceed_the_pull_limit_is_not_imported(start):
    ecr = start(upstream_pull_limits={"registry-1.docker.io": {"limit": 100, "remaining": 3}})
    answer = pull(ecr, NGINX, "1.27")
    assert [f["failureCode"] for f in answer["failures"]] == ["UpstreamTooManyRequests"]
    assert ecr.describe_images(repositoryName=NGINX)["imageDetails"] == []
    assert remaining(ecr) == "0;w=21600", "the GETs made were spent"


def test_within_the_recheck_interval_a_pull_spends_nothing(start):
    ecr = start(upstream_pull_limits={"registry-1.docker.io": {"limit": 100, "remaining": 1}})
    assert pull(ecr, NGINX, "1.26")["failures"] == []
    assert pull(ecr, NGINX, "1.26")["failures"] == []
    assert remaining(ecr) == "0;w=21600"


def test_described_images_say_when_they_were_pushed_and_last_pulled(start):
    ecr = start(recheck_interval_seconds=0)
    started = time.time()
    digest = pull(ecr, NGINX, "1.27")["images"][0]["imageId"]["imageDigest"]
    details = {d["imageDigest"]: d for d in ecr.describe_images(repositoryName=NGINX)["imageDetails"]}
    assert len(details) == 4
    assert all(started - 1 <= d["imagePushedAt"].timestamp() <= time.time() + 1 for d in details.values())
    first = details[digest]["lastRecordedPullTime"].timestamp()
    assert started - 1 <= first <= time.time() + 1
    assert [d for d in details.values() if "lastRecordedPullTime" in d] == [details[digest]], (
        "the platform manifests were imported, not pulled")

    time.sleep(0.05)
    pull(ecr, NGINX, "1.27")
    again = ecr.describe_images(repositoryName=NGINX, imageIds=[{"imageTag": "1.27"}])["imageDetails"][0]
    assert again["lastRecordedPullTime"].timestamp() > first
    assert again["imagePushedAt"] == details[digest]["imagePushedAt"], "the same image, not pushed again"
