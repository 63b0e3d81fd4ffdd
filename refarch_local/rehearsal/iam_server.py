"""The local AWS API with IAM enforced: moto's server, every request signed by a runtime authorized.

Run as its own process by `IamEnforcedAws` (refarch_local/rehearsal/iam.py):

    python -m refarch_local.rehearsal.iam_server --port 9400 --state-dir DIR

It serves every moto service on 127.0.0.1 through `LocalSqsServer` (requests serialised, long polls
outside the lock) with `INITIAL_NO_AUTH_ACTION_COUNT=0`: no request goes unchecked. Before it
serves, it creates the rehearsal's admin user in-process (setup only: queues, secrets, the runtime
users) and writes its keys to DIR/admin.json: no unauthenticated window (moto's
INITIAL_NO_AUTH_ACTION_COUNT > 0) another client could use first. Each decision on a runtime user's request is counted;
each refusal is appended to DIR/denials.jsonl as {"role", "action", "resource", "reason"}.
`GET /_rehearsal/iam` returns {"checked": n, "denied": m}.

The state machines run in the rehearsal's process (refarch_local/rehearsal/states.py), their tasks
routed to local handlers rather than sent here; each such call is checked here all the same, as
the machine's role, through `POST /_rehearsal/iam/authorize`, and counted with the others.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from refarch_local.rehearsal.iam_requests import element_matches, iam_action, request_resource
from refarch_local.rehearsal.template import LOCAL_ACCOUNT
from refarch_local.sqs import LocalSqsServer

ADMIN_USER = "rehearsal-admin"
LEDGER_PATH = "/_rehearsal/iam"
AUTHORIZE_PATH = "/_rehearsal/iam/authorize"
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


class DecisionLedger:
    """Counts the authorization decisions on runtime users' requests and logs every refusal."""

    def __init__(self, denials_log: Path) -> None:
        self.denials_log = denials_log
        self.checked = 0
        self.denied = 0
        self._lock = threading.Lock()

    def record(self, user: str, action: str, resource: str, refusal: str | None) -> None:
        """One decision (refusal None: allowed). The admin's setup calls are not a runtime's calls."""
        if user == ADMIN_USER:
            return
        with self._lock:
            self.checked += 1
            if refusal is None:
                return
            self.denied += 1
            denial = {"role": user, "action": action, "resource": resource, "reason": refusal}
            with self.denials_log.open("a", encoding="utf-8") as log:
                log.write(json.dumps(denial) + "\n")

    def counts(self) -> dict[str, int]:
        """{"checked": n, "denied": m} so far."""
        with self._lock:
            return {"checked": self.checked, "denied": self.denied}


def _arn_of(response: Any, action: str, value: str) -> str:
    """The ARN of what a request names: a secret by name or ARN, a queue by name, a function by name."""
    if value.startswith("arn:"):
        if action.startswith("secretsmanager:"):
            return _secret_arn(response, value) or value
        return value
    region, account = response.region, response.current_account
    if action.startswith("secretsmanager:"):
        return _secret_arn(response, value) or f"arn:aws:secretsmanager:{region}:{account}:secret:{value}"
    if action.startswith("sqs:"):
        return f"arn:aws:sqs:{region}:{account}:{value}"
    if action.startswith("lambda:"):
        return f"arn:aws:lambda:{region}:{account}:function:{value}"
    return value


def _secret_arn(response: Any, secret_id: str) -> str | None:
    """The full ARN of a stored secret named by its name or (partial) ARN, or None when there is none."""
    from moto.secretsmanager.models import secretsmanager_backends

    secrets = secretsmanager_backends[response.current_account][response.region].secrets
    return secrets[secret_id].arn if secret_id in secrets else None


def _parameter(response: Any, name: str) -> Any:
    """A request parameter (a Lambda function's name is in the path of Invoke)."""
    if name == "FunctionName":
        found = re.search(r"/functions/([^/]+)/invocations", response.path)
        return unquote(found.group(1)) if found else None
    return response._get_param(name)


def install_authorizer(ledger: DecisionLedger) -> None:
    """Authorize every request with moto's IAM engine, checking the action and resource AWS would check."""
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.exceptions import AccessDeniedError, InvalidClientTokenIdError, JsonRESTError
    from moto.iam.access_control import IAMPolicyStatement, IAMRequest, IAMUserAccessKey
    from werkzeug.exceptions import HTTPException

    class JsonAccessDenied(JsonRESTError):
        """AWS's refusal as a JSON-protocol service sends it (moto's is XML, which those clients cannot parse)."""

        code = 403

        def __init__(self, message: str) -> None:
            super().__init__("AccessDeniedException", message)

    class RuntimeRequest(IAMRequest):
        """moto's IAM request, authorizing the IAM action (not the operation under the signing name) and
        refusing with AWS's message, which names the resource."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._action = iam_action(self._service, kwargs["action"])
            self._resource = "*"

        def check_action_permitted(self, resource: str) -> None:
            self._resource = resource
            super().check_action_permitted(resource)

        def _raise_access_denied(self) -> None:
            message = (
                f"User: {self._access_key.arn} is not authorized to perform: {self._action} on resource: "
                f"{self._resource} because no identity-based policy allows the {self._action} action"
            )
            if self._headers.get("Content-Type", "").startswith("application/x-amz-json"):
                raise JsonAccessDenied(message)  # JSON-protocol clients (SQS, Secrets Manager, Step Functions)
            raise AccessDeniedError(self._access_key.arn, message.partition("perform: ")[2])

    def authorize(response: Any, resource: str = "*") -> None:
        credential = response.headers.get("Authorization", "").partition("Credential=")[2].split("/")
        access_key, signing_name = credential[0], credential[3] if len(credential) > 3 else ""
        action = iam_action(signing_name, response._get_action())
        resource = request_resource(
            action, lambda name: _parameter(response, name), lambda a, v: _arn_of(response, a, v), resource
        )
        user = f"unknown access key {access_key!r}" if access_key else "an unsigned request"
        try:
            if not access_key:
                raise InvalidClientTokenIdError()
            request = RuntimeRequest(
                account_id=response.current_account,
                method=response.method,
                path=response.raw_path + (f"?{query}" if (query := urlparse(response.uri).query) else ""),
                data=response.data,
                body=response.raw_body,
                headers=response.headers,
                action=response._get_action(),
            )
            if isinstance(request._access_key, IAMUserAccessKey):
                user = request._access_key._owner_user_name
            request.check_signature()
            request.check_action_permitted(resource)
        except HTTPException as refusal:
            ledger.record(user, action, resource, getattr(refusal, "message", None) or str(refusal))
            raise
        ledger.record(user, action, resource, None)

    def check_element_matches(statement: IAMPolicyStatement, element: str, value: str) -> bool:
        return element_matches(statement._statement, element, value)

    ActionAuthenticatorMixin._authenticate_and_authorize_normal_action = authorize  # type: ignore[method-assign,assignment]
    IAMPolicyStatement._check_element_matches = check_element_matches  # type: ignore[method-assign,assignment]


def decide(user: str, action: str, resource: str) -> str | None:
    """None when the user's policies allow `action` on `resource`, else AWS's refusal (moto's evaluation:
    an explicit Deny wins, else any Allow allows)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.iam.models import iam_backends

    iam = iam_backends[LOCAL_ACCOUNT]["aws"]
    if user not in {u.name for u in iam.list_users("/", None, None)}:
        return f"no user stands for role {user}: grant the role first"
    results = {
        IAMPolicy(iam.get_user_policy(user, name)).is_action_permitted(action, resource)
        for name in iam.list_user_policies(user)
    }
    if PermissionResult.PERMITTED in results and PermissionResult.DENIED not in results:
        return None
    arn = f"arn:aws:iam::{LOCAL_ACCOUNT}:user/{user}"
    return (
        f"User: {arn} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


def create_admin(state_dir: Path) -> dict[str, str]:
    """The rehearsal's admin user (every action), made in-process before the server answers anyone."""
    from moto.iam.models import iam_backends

    iam = iam_backends[LOCAL_ACCOUNT]["aws"]
    iam.create_user(region_name="us-east-1", user_name=ADMIN_USER)
    iam.put_user_policy(ADMIN_USER, "admin", json.dumps(ADMIN_POLICY))
    key = iam.create_access_key(ADMIN_USER)
    keys = {"aws_access_key_id": key.access_key_id, "aws_secret_access_key": key.secret_access_key}
    path = state_dir / "admin.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps(keys))
    return keys


class IamEnforcingServer(LocalSqsServer):
    """`LocalSqsServer` answering `GET /_rehearsal/iam` with the ledger's counts, and
    `POST /_rehearsal/iam/authorize` {"role", "action", "resource"} with {"refusal": null or why}: the
    check of a call a local stand-in for an AWS service makes as a role (a state machine's task)."""

    def __init__(self, port: int, ledger: DecisionLedger, admin: dict[str, str]) -> None:
        super().__init__(port, metric_credentials=admin)
        self.ledger = ledger

    def _serve(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ.get("PATH_INFO") == LEDGER_PATH:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(self.ledger.counts()).encode()]
        if environ.get("PATH_INFO") == AUTHORIZE_PATH:
            call = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
            refusal = decide(call["role"], call["action"], call["resource"])
            self.ledger.record(call["role"], call["action"], call["resource"], refusal)
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"refusal": refusal}).encode()]
        return super()._serve(environ, start_response)


def main(argv: list[str] | None = None) -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    from moto import settings

    if settings.INITIAL_NO_AUTH_ACTION_COUNT != 0:
        raise SystemExit("start this server with INITIAL_NO_AUTH_ACTION_COUNT=0: every request must be checked")
    ledger = DecisionLedger(args.state_dir / "denials.jsonl")
    install_authorizer(ledger)
    admin = create_admin(args.state_dir)
    IamEnforcingServer(args.port, ledger, admin).start()
    threading.Event().wait()  # until the launcher stops this process


if __name__ == "__main__":
    main()
