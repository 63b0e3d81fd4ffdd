"""What `cdk deploy` would create, created locally from the templates: the resources the runtimes reach.

One moto server on 127.0.0.1 is the AWS API (SQS, Secrets Manager, CloudWatch, ...); the
embedded Postgres plays the RDS instance (its master user and database as the template names
them); the OpenAI and Pinecone stand-ins play the two paid APIs. `LocalCloud.provision` creates
each queue (with its attributes and redrive policy) and each secret (generated as
GenerateSecretString says; an RDS attachment adds host and port) from its template properties,
and the API-key secrets the operator creates before a deploy; everything else a template names
gets a well-formed placeholder (a Resolver fallback), which only IAM policies refer to.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
from psycopg2 import sql

from refarch_local.database import LocalDatabase
from refarch_local.rehearsal.iam import IamEnforcedAws
from refarch_local.rehearsal.states import local_functions_and_state_machines
from refarch_local.rehearsal.template import (
    LOCAL_ACCOUNT,
    Assembly,
    LocalResource,
    Resolver,
    ResourceKey,
    TemplateError,
)
from refarch_local.standins import OpenAIStandIn, PineconeStandIn

REGION = "us-east-1"
PINECONE_API_KEY = "rehearsal-pinecone-key"
# Secrets the operator creates before the first deploy (docs/deploy.md), by the variable naming them.
OPERATOR_SECRETS = {"REFARCH_OPENAI_SECRET_ARN": "sk-rehearsal", "REFARCH_PINECONE_SECRET_ARN": PINECONE_API_KEY}
POSTGRES_PORT = "5432"
# The AWS::SQS::Queue properties that are queue attributes of the same name.
QUEUE_ATTRIBUTES = (
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "MessageRetentionPeriod",
    "VisibilityTimeout",
    "RedrivePolicy",
    "DelaySeconds",
)


@dataclass
class LocalCloud:
    """The local stand-ins for AWS, RDS, OpenAI and Pinecone, and the resources provisioned in them."""

    assembly: Assembly
    home: Path
    database: LocalDatabase = field(init=False)
    _database_dir: Path = field(init=False)
    aws: IamEnforcedAws = field(init=False)
    openai: OpenAIStandIn = field(init=False)
    pinecone: PineconeStandIn = field(init=False)
    resources: dict[ResourceKey, LocalResource] = field(default_factory=dict)
    # The RDS instance's master user secret and database, as its template names them.
    master_secret: ResourceKey | None = None
    master_database: str = "postgres"

    def start(self) -> LocalCloud:
        """Start Postgres, the AWS API (moto's server, IAM enforced) and the stand-ins (the Pinecone index of the
        template's dimension)."""
        # Postgres listens on a Unix socket in its data directory, and a socket path may hold at most
        # 107 bytes: the database lives in a short temporary directory, not under a deep home.
        self._database_dir = Path(tempfile.mkdtemp(prefix="refarch-rehearsal-pg-"))
        self.database = LocalDatabase(self._database_dir)
        self.database.start()
        self.aws = IamEnforcedAws.start(self.home / "aws")
        self.openai = OpenAIStandIn().start()
        self.pinecone = PineconeStandIn(dimension=self._pinecone_dimension(), api_key=PINECONE_API_KEY).start()
        return self

    def stop(self) -> None:
        """Stop everything started."""
        self.pinecone.stop()
        self.openai.stop()
        self.aws.stop()
        self.database.stop()
        shutil.rmtree(self._database_dir, ignore_errors=True)

    @property
    def endpoint(self) -> str:
        """The AWS endpoint every runtime's SDK calls (AWS_ENDPOINT_URL)."""
        return self.aws.endpoint

    def client(self, service: str) -> Any:
        """A boto3 client of the local AWS API as its admin: the rehearsal itself (setting up, reading results)."""
        return self.aws.admin_client(service)

    def resolver(self) -> Resolver:
        """A Resolver from the templates to the resources provisioned here (placeholders for the rest)."""
        return Resolver(self.assembly, self.resources, region=REGION, account=LOCAL_ACCOUNT, fallback=placeholder)

    # -- provisioning ------------------------------------------------------------------------

    def provision(self) -> Resolver:
        """Create every queue, secret and the database the templates declare; return the resolver over them."""
        self.resources.update(local_functions_and_state_machines(self.assembly, REGION, LOCAL_ACCOUNT))
        self._provision_database()
        queues = sorted(self.assembly.resources("AWS::SQS::Queue"), key=lambda q: "RedrivePolicy" in q[1]["Properties"])
        for key, queue in queues:  # dead-letter queues first: the others' redrive policies name them
            self._create_queue(key, queue["Properties"])
        for key, secret in self.assembly.resources("AWS::SecretsManager::Secret"):
            self._create_secret(key, secret["Properties"])
        for key, attachment in self.assembly.resources("AWS::SecretsManager::SecretTargetAttachment"):
            self._attach_secret(key, attachment["Properties"])
        for key, _ in self.assembly.resources("Custom::PineconeIndex"):
            # The Pinecone index custom resource's output; the stand-in serves the index at its URL.
            self.resources[key] = LocalResource(ref=key.logical_id, attributes={"Host": self.pinecone.url})
        resolver = self.resolver()
        self._create_operator_secrets(resolver)
        return resolver

    def _pinecone_dimension(self) -> int:
        for _, index in self.assembly.resources("Custom::PineconeIndex"):
            return int(index["Properties"]["Dimension"])
        return 1536

    def _provision_database(self) -> None:
        """The RDS instance: its master user (from the secret its template resolves) owning its database."""
        for key, instance in self.assembly.resources("AWS::RDS::DBInstance"):
            props = instance["Properties"]
            secret_id = _referenced_secret(props["MasterUsername"])
            self.resources[key] = LocalResource(
                ref=key.logical_id,
                attributes={"Endpoint.Address": str(self.database.pgdata), "Endpoint.Port": POSTGRES_PORT},
            )
            self.master_secret = ResourceKey(key.stack, secret_id)
            self.master_database = str(props.get("DBName", "postgres"))

    def _create_queue(self, key: ResourceKey, props: dict[str, Any]) -> None:
        resolver = self.resolver()
        attributes = {
            name: json.dumps(resolver.resolve(key.stack, value))
            if name == "RedrivePolicy"
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
            for name, value in props.items()
            if name in QUEUE_ATTRIBUTES
        }
        name = props.get("QueueName") or key.logical_id
        url = self.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = f"arn:aws:sqs:{REGION}:{LOCAL_ACCOUNT}:{name}"
        self.resources[key] = LocalResource(ref=url, attributes={"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _create_secret(self, key: ResourceKey, props: dict[str, Any]) -> None:
        name = props.get("Name") or f"{key.stack}-{key.logical_id}"
        value = generated_secret(props.get("GenerateSecretString", {}))
        if key == self.master_secret:
            self._create_master_user(json.loads(value), self.master_database)
        arn = self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        self.resources[key] = LocalResource(ref=arn, attributes={"Id": arn})

    def _create_master_user(self, credentials: dict[str, str], dbname: str) -> None:
        conn = psycopg2.connect(self.database.dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                # RDS's master user may create extensions and roles; a superuser is the closest local match.
                cur.execute(
                    sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                        sql.Identifier(credentials["username"]), sql.Literal(credentials["password"])
                    )
                )
                cur.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(dbname), sql.Identifier(credentials["username"])
                    )
                )
        finally:
            conn.close()

    def _attach_secret(self, key: ResourceKey, props: dict[str, Any]) -> None:
        """An RDS attachment adds the instance's address to the secret (its socket directory, percent-encoded)."""
        secret = self.resources[ResourceKey(key.stack, props["SecretId"]["Ref"])]
        client = self.client("secretsmanager")
        value = json.loads(client.get_secret_value(SecretId=secret.ref)["SecretString"])
        value.update(host=quote(str(self.database.pgdata), safe=""), port=int(POSTGRES_PORT), engine="postgres")
        client.put_secret_value(SecretId=secret.ref, SecretString=json.dumps(value))
        self.resources[key] = secret

    def _create_operator_secrets(self, resolver: Resolver) -> None:
        """The API-key secrets the templates import by name (the operator creates them before deploying)."""
        wanted: dict[str, str] = {}
        for function in self.assembly.functions():
            for variable, value in OPERATOR_SECRETS.items():
                if variable in function.environment:
                    wanted[resolver.resolve_text(function.key.stack, function.environment[variable])] = value
        client = self.client("secretsmanager")
        for arn, value in wanted.items():
            client.create_secret(Name=arn.split(":secret:", 1)[1], SecretString=value)


def _referenced_secret(value: Any) -> str:
    """The logical id of the secret a `{{resolve:secretsmanager:...}}` dynamic reference names."""
    match = re.search(r'"Ref": "([^"]+)"', json.dumps(value))
    if match is None:
        raise TemplateError(f"no secret reference in {value!r}")
    return match.group(1)


def generated_secret(spec: dict[str, Any]) -> str:
    """A value as Secrets Manager generates it: a password, inside SecretStringTemplate when one is given."""
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "".join(c for c in string.punctuation if c not in spec.get("ExcludeCharacters", ""))
    password = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "SecretStringTemplate" not in spec:
        return password
    return json.dumps({**json.loads(spec["SecretStringTemplate"]), spec["GenerateStringKey"]: password})


def placeholder(key: ResourceKey, resource: dict[str, Any]) -> LocalResource:
    """A well-formed ARN for a resource nothing runs locally (roles, log groups, alarms, ...)."""
    service = resource["Type"].split("::")[1].lower()
    arn = f"arn:aws:{service}:{REGION}:{LOCAL_ACCOUNT}:{key.stack}-{key.logical_id}"
    host = f"https://{key.logical_id.lower()}.invalid"  # a custom resource's Host (the Pinecone index's)
    return LocalResource(ref=arn, attributes={"Arn": arn, "Name": key.logical_id, "Id": key.logical_id, "Host": host})
