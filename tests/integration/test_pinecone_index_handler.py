"""The Pinecone index custom resource end to end: the real `pinecone` SDK v10 against the stand-in's
control plane over HTTP, the API key read from a real Secrets Manager API (moto's server).

The handler is loaded by the handler string the CDK stack declares and called with CloudFormation's
event shapes. PINECONE_CONTROLLER_HOST (read by the SDK) sends it to the stand-in; in AWS it is unset.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pinecone
import pytest

import lambdas.pinecone_index
from refarch.index import pinecone_indexes
from refarch.index.pinecone_index import PineconeIndex
from refarch.index.port import VectorRecord
from refarch.lanes import topology
from refarch.observability import logger
from refarch_local.handlers import LocalLambdaContext, load_handler
from refarch_local.standins import PineconeStandIn

DIMENSION = 384
REGION = "us-west-2"  # not the SDK's default region, so the test sees the stack's region reach Pinecone
INDEX = "refarch-products"


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new index answers "Initializing" on create; poll it every 10 ms, not every 5 s."""
    monkeypatch.setattr(pinecone_indexes, "POLL_SECONDS", 0.01)


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[PineconeStandIn]:
    with PineconeStandIn(dimension=DIMENSION, api_key=f"pc-{uuid.uuid4().hex}") as server:
        monkeypatch.setenv("PINECONE_CONTROLLER_HOST", server.url)
        monkeypatch.delenv("PINECONE_API_KEY", raising=False)  # the key must come from the secret
        yield server


@pytest.fixture
def api_key_secret(stand_in: PineconeStandIn, secretsmanager: Any) -> str:
    """The stand-in's API key in a secret on moto's server, as the stack's secret holds it; returns the ARN."""
    return create_secret(REGION, json.dumps({"apiKey": stand_in.api_key}))


def create_secret(region: str, value: str) -> str:
    client = boto3.client("secretsmanager", region_name=region)
    return client.create_secret(Name=f"test/{uuid.uuid4().hex[:8]}/pinecone-api-key", SecretString=value)["ARN"]


def cfn_event(
    request_type: str, secret_arn: str, *, dimension: int = DIMENSION, region: str = REGION, **extra: Any
) -> dict[str, Any]:
    """A CloudFormation custom resource request as the CDK Provider framework passes it on."""
    properties = {
        "ServiceToken": "arn:aws:lambda:us-west-2:000000000000:function:provider",
        "IndexName": INDEX,
        "Dimension": str(dimension),
        "Region": region,
        "ApiKeySecretArn": secret_arn,
    }
    return {
        "RequestType": request_type,
        "ServiceToken": properties["ServiceToken"],
        "ResponseURL": "https://cloudformation-custom-resource-response.example/",
        "StackId": f"arn:aws:cloudformation:{region}:000000000000:stack/Refarch-dev-PineconeIndex/{uuid.uuid4()}",
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "Index",
        "ResourceType": "Custom::PineconeIndex",
        "ResourceProperties": properties,
        **extra,
    }


def invoke(event: dict[str, Any], *, timeout_seconds: int = 300) -> dict[str, Any]:
    handler = load_handler(topology.PINECONE_INDEX_HANDLER)
    return handler(event, LocalLambdaContext(function_name="pinecone_index", timeout_seconds=timeout_seconds))


def routes_received(stand_in: PineconeStandIn) -> list[str]:
    return [route for route, _ in stand_in.received]


def test_create_makes_a_dense_cosine_index_in_the_stack_region_and_returns_its_host(
    stand_in, api_key_secret, caplog, capfd
):
    # Given no index yet, and every log line of the handler, the SDK and its HTTP client captured
    # (not botocore's debug log, which prints the secret it fetched: that one stays off in Lambda)
    for name in ("pinecone", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    previous_level = logger.log_level
    logger.setLevel("DEBUG")
    try:
        # When CloudFormation creates the resource
        result = invoke(cfn_event("Create", api_key_secret))
    finally:
        logger.setLevel(previous_level)

    # Then the index exists with the embedder's dimension, cosine, serverless on AWS in the stack's region
    assert set(stand_in.indexes) == {INDEX}
    created = stand_in.indexes[INDEX]
    assert created["schema"] == {
        "fields": {"_values": {"type": "dense_vector", "dimension": DIMENSION, "metric": "cosine"}}
    }
    assert created["deployment"] == {"deployment_type": "managed", "cloud": "aws", "region": REGION}
    assert stand_in.calls["create_index"] == 1
    # And its host comes back for the stack output, and the data plane answers there with the right dimension
    assert result == {"PhysicalResourceId": INDEX, "Data": {"Host": f"{stand_in.url}/index/{INDEX}"}}
    PineconeIndex(api_key=stand_in.api_key, dimension=DIMENSION, host=result["Data"]["Host"]).ensure()
    # And the creation was logged, without the API key
    out, err = capfd.readouterr()
    logged = out + err + caplog.text + " ".join(str(record.__dict__) for record in caplog.records)
    assert "pinecone index created" in logged
    assert stand_in.api_key not in logged


def test_create_when_the_index_exists_keeps_it_and_returns_the_same_host(stand_in, api_key_secret):
    # Given the index was created by an earlier deploy
    first = invoke(cfn_event("Create", api_key_secret))
    before = dict(stand_in.indexes[INDEX])

    # When a Create arrives again (a retried or re-created stack)
    second = invoke(cfn_event("Create", api_key_secret))

    # Then nothing is created a second time and the answer is the same
    assert routes_received(stand_in).count("create_index") == 1
    assert stand_in.indexes == {INDEX: before}
    assert second == first


def test_update_to_another_dimension_keeps_the_index_for_the_reindex_to_add_one_beside_it(stand_in, api_key_secret):
    # Given a 384-d index
    created = invoke(cfn_event("Create", api_key_secret))

    # When the embedder's dimension changes to 1536 and the stack updates
    update = cfn_event(
        "Update",
        api_key_secret,
        dimension=1536,
        PhysicalResourceId=INDEX,
        OldResourceProperties=cfn_event("Create", api_key_secret)["ResourceProperties"],
    )
    updated = invoke(update)

    # Then the update succeeds with the index left as it was (its generations keep being served from
    # it; the deploy's re-index creates the 1536-d index: refarch.generations.reindex.start)
    assert updated == created
    assert stand_in.indexes[INDEX]["schema"]["fields"]["_values"]["dimension"] == DIMENSION
    assert routes_received(stand_in).count("create_index") == 1


def test_create_over_an_index_of_another_dimension_is_a_clear_error_naming_both(stand_in, api_key_secret):
    # Given a 384-d index of that name (made by hand, or by another stack)
    invoke(cfn_event("Create", api_key_secret))
    # When a new stack whose embedder makes 1536-d vectors creates the resource
    with pytest.raises(ValueError, match=f"{INDEX} has dimension {DIMENSION}, the embedder needs 1536"):
        invoke(cfn_event("Create", api_key_secret, dimension=1536))
    # Then the index is left as it was
    assert stand_in.indexes[INDEX]["schema"]["fields"]["_values"]["dimension"] == DIMENSION


def test_delete_keeps_the_index_and_its_vectors(stand_in, api_key_secret):
    # Given the index, holding vectors
    host = invoke(cfn_event("Create", api_key_secret))["Data"]["Host"]
    vector = VectorRecord(1, [1.0] + [0.0] * (DIMENSION - 1), {"sku": "S-1"})
    PineconeIndex(api_key=stand_in.api_key, dimension=DIMENSION, host=host, namespace="products").upsert([vector])
    stand_in.reset()

    # When the stack (or the resource) is deleted
    result = invoke(cfn_event("Delete", api_key_secret, PhysicalResourceId=INDEX))

    # Then the resource reports its id and Pinecone is not even called: the index and its data stay
    assert result == {"PhysicalResourceId": INDEX}
    assert routes_received(stand_in) == []
    assert set(stand_in.indexes) == {INDEX}
    assert list(stand_in.vectors("products", index=INDEX)) == ["1"]


def test_a_new_index_is_described_until_it_is_ready(stand_in, api_key_secret):
    # Given Pinecone reports a new index as initializing for two describes
    stand_in.initializing_describes = 2

    # When CloudFormation creates the resource
    result = invoke(cfn_event("Create", api_key_secret))

    # Then the handler waited through both and answered once the index was ready
    assert stand_in.calls["describe_index"] == 3
    assert result["Data"] == {"Host": f"{stand_in.url}/index/{INDEX}"}


def test_an_index_that_stays_initializing_fails_before_lambda_would_time_out(stand_in, api_key_secret, monkeypatch):
    # Given an index that never becomes ready, and an invocation with one second to spare after the margin
    stand_in.initializing_describes = 10_000
    monkeypatch.setattr(pinecone_indexes, "POLL_SECONDS", 0.2)
    seconds = int(lambdas.pinecone_index.DEADLINE_MARGIN_SECONDS) + 1

    # When CloudFormation creates the resource, Then the failure names the index and its state
    with pytest.raises(TimeoutError, match=f"{INDEX} is still Initializing"):
        invoke(cfn_event("Create", api_key_secret), timeout_seconds=seconds)


def test_a_region_without_pinecone_serverless_is_refused_with_the_reason(stand_in, api_key_secret):
    # Given a stack in a region where Pinecone serverless does not run (its secret lives there too)
    arn = create_secret("eu-north-1", stand_in.api_key)

    # When CloudFormation creates the resource, Then Pinecone's refusal names the region
    with pytest.raises(pinecone.ApiError, match="does not run in aws region 'eu-north-1'") as refused:
        invoke(cfn_event("Create", arn, region="eu-north-1"))
    assert refused.value.status_code == 400
    assert stand_in.indexes == {}


# -- the stand-in's control plane, where the handler does not go ------------------------------


def test_the_control_plane_answers_409_for_a_taken_name_and_honours_deletion_protection(stand_in):
    # Given an index with deletion protection
    pc = pinecone.Pinecone(api_key=stand_in.api_key, host=stand_in.url)
    schema = {"fields": {"_values": {"type": "dense_vector", "dimension": 8, "metric": "dotproduct"}}}
    pc.indexes.create(name="kept", schema=schema, deletion_protection="enabled")

    # When it is created again or deleted, Then Pinecone's errors come back through the SDK
    with pytest.raises(pinecone.ConflictError, match="kept already exists"):
        pc.indexes.create(name="kept", schema=schema)
    with pytest.raises(pinecone.ForbiddenError, match="Deletion protection"):
        pc.indexes.delete("kept")
    # And it is listed with the API's default deployment
    assert [(i.name, i.deployment.region, i.schema.fields["_values"].metric) for i in pc.indexes.list()] == [
        ("kept", "us-east-1", "dotproduct")
    ]
    # And an unprotected index can be deleted, after which it is gone
    pc.indexes.create(name="scratch", schema=schema)
    pc.indexes.delete("scratch")
    assert not pc.indexes.exists("scratch")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "Products_Index"}, "Invalid index name 'Products_Index'"),
        ({"schema": {"fields": {"_values": {"type": "dense_vector", "dimension": 0}}}}, "dimension must be"),
        ({"schema": {"fields": {"_values": {"type": "dense_vector", "dimension": 8, "metric": "l1"}}}}, "metric"),
        ({"schema": {"fields": {"body": {"type": "string"}}}}, "dense vector indexes only"),
        ({"deployment": {"deployment_type": "pod", "environment": "us-east1-gcp"}}, "serverless indexes only"),
        ({"deployment": {"deployment_type": "managed", "cloud": "ibm", "region": "x"}}, "cloud must be one of"),
        ({"source_collection": "old"}, "does not support: source_collection"),
    ],
)
def test_the_control_plane_refuses_a_malformed_create_with_a_400_saying_why(stand_in, body, message):
    # Given a create request that is valid except for one thing
    request = {
        "name": "products",
        "schema": {"fields": {"_values": {"type": "dense_vector", "dimension": 8, "metric": "cosine"}}},
        "deployment": {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
        **body,
    }

    # When it is sent as the SDK would send it
    headers = {"Api-Key": stand_in.api_key, "X-Pinecone-Api-Version": "2026-07"}
    answer = httpx.post(f"{stand_in.url}/indexes", json=request, headers=headers, timeout=5)

    # Then it is a 400 in the control plane's envelope, and nothing was created
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert message in answer.json()["error"]["message"]
    assert stand_in.indexes == {}


def test_describing_a_missing_index_is_a_404_in_the_control_plane_envelope(stand_in):
    headers = {"Api-Key": stand_in.api_key, "X-Pinecone-Api-Version": "2026-07"}
    answer = httpx.get(f"{stand_in.url}/indexes/absent", headers=headers, timeout=5)
    assert answer.status_code == 404
    assert answer.json() == {"error": {"code": "NOT_FOUND", "message": "Resource absent not found"}, "status": 404}
