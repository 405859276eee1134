"""The emulator's pull-through cache behaviour, over HTTP with boto3."""

import hashlib
import json
import os
import shutil
import sys
import time

import boto3
import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import ecr_emulator  # noqa: E402

DOCKER_HUB = {"ecrRepositoryPrefix": "docker-hub", "upstreamRegistryUrl": "registry-1.docker.io"}
NGINX = "docker-hub/library/nginx"


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


def test_a_tag_moved_upstream_is_refreshed_on_the_next_pull(start, catalog):
    ecr = start()
    before = pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"]
    data = json.loads(catalog.read_text())
    data["registry-1.docker.io"]["library/nginx"]["tags"]["1.26"]["layers"][0]["size"] += 1
    catalog.write_text(json.dumps(data))
    os.utime(catalog, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    after = pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"]
    assert after != before
    tagged = ecr.describe_images(repositoryName=NGINX, imageIds=[{"imageTag": "1.26"}])["imageDetails"][0]
    assert tagged["imageDigest"] == after


def test_the_recheck_interval_keeps_the_cached_tag(start, catalog):
    ecr = start(recheck_interval_seconds=86400)
    before = pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"]
    data = json.loads(catalog.read_text())
    data["registry-1.docker.io"]["library/nginx"]["tags"]["1.26"]["layers"][0]["size"] += 1
    catalog.write_text(json.dumps(data))
    assert pull(ecr, NGINX, "1.26")["images"][0]["imageId"]["imageDigest"] == before


def test_absent_upstream_is_image_not_found_and_a_cached_copy_is_still_served(start, catalog):
    ecr = start()
    answer = pull(ecr, NGINX, "0.0-missing", "1.26")
    assert [f["failureCode"] for f in answer["failures"]] == ["ImageNotFound"]
    assert answer["failures"][0]["imageId"] == {"imageTag": "0.0-missing"}
    data = json.loads(catalog.read_text())
    del data["registry-1.docker.io"]["library/nginx"]["tags"]["1.26"]
    catalog.write_text(json.dumps(data))
    os.utime(catalog, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert pull(ecr, NGINX, "1.26")["failures"] == []


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


def test_other_calls_are_moto_s(start):
    ecr = start()
    ecr.create_repository(repositoryName="team/app")
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["team/app"]
