"""A loopback IAM gate: code runs against the loopback S3 (and a Lambda/CodeDeploy stand-in)
under exactly the identity policy of one role, evaluated as AWS evaluates it.

Why not moto's own enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``): read in moto 5.2's
``moto/iam/access_control.py`` and ``core/authorization.py``, it checks every non-S3 action
against the resource ``*`` (so any resource-scoped Lambda or CodeDeploy grant is refused), it
turns a statement whose condition it cannot evaluate into an explicit Deny (it passes no
request context: an ``s3:prefix`` condition denies), and it answers a GET of a missing key
with 404 whatever the caller may list. Each of those would make a test pass or fail for
moto's reasons, not AWS's.

The gate is an HTTP proxy (S3, Lambda, CodeDeploy, KMS, CloudWatch, Firehose). Each request is
signed (SigV4) with an access key id that names a role (``Gate.credentials(role)``); the gate
maps the request to its IAM action, resource and condition keys, evaluates the role's
statements (explicit Deny wins, then any Allow, else an implicit deny;
``Action``/``NotAction``, ``Resource``/``NotResource``, ``*``/``?`` wildcards, the
String/Arn/Bool condition operators, a missing key failing its condition), and answers a
refusal in the service's own error shape (S3: 403 ``AccessDenied``, XML; Lambda and CodeDeploy:
``AccessDeniedException``), or forwards the request upstream. Like S3, it answers a GET or HEAD
of a missing key with 403 ``AccessDenied`` when the role may not ``s3:ListBucket`` the bucket.
Signatures are not verified: the policy is under test, not the signing.

Statements come from synthesized templates (``role_statements``), their intrinsic functions
resolved with the template's own names (bucket names, log groups, functions).
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from tools import loopback_http

Statement = dict[str, Any]
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


# ---- policy evaluation ------------------------------------------------------------------------
def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM's wildcard match: `*` any run, `?` one character, nothing else special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


_OPERATORS = {
    "StringEquals": lambda want, have: want == have,
    "StringLike": lambda want, have: _like(want, have),
    "ArnEquals": lambda want, have: want == have,
    "ArnLike": lambda want, have: _like(want, have),
    "Bool": lambda want, have: str(want).lower() == str(have).lower(),
}


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, Any]) -> bool:
    for operator, keys in condition.items():
        negated = operator.startswith(("StringNot", "ArnNot"))
        base = operator.replace("Not", "", 1) if negated else operator
        if base not in _OPERATORS:
            raise ValueError(f"condition operator {operator} is not modelled by the gate")
        for key, wanted in keys.items():
            have = context.get(key)
            if have is None:  # a missing key fails a positive operator, passes a negated one
                if not negated:
                    return False
                continue
            matched = any(_OPERATORS[base](str(w), str(have)) for w in _list(wanted))
            if matched == negated:
                return False
    return True


def _applies(statement: Statement, action: str, resource: str, context: Mapping[str, Any]) -> bool:
    if "NotAction" in statement:
        if any(_like(a, action, case=False) for a in _list(statement["NotAction"])):
            return False
    elif not any(_like(a, action, case=False) for a in _list(statement.get("Action", []))):
        return False
    if "NotResource" in statement:
        if any(_like(r, resource) for r in _list(statement["NotResource"])):
            return False
    elif not any(_like(r, resource) for r in _list(statement.get("Resource", []))):
        return False
    return _condition_holds(statement.get("Condition", {}), context)


def allowed(statements: Iterable[Statement], action: str, resource: str,
            context: Mapping[str, Any] | None = None) -> bool:  # fmt: skip
    """AWS's identity-policy decision: an explicit Deny wins, then any Allow; else denied."""
    context = context or {}
    matching = [s for s in statements if _applies(s, action, resource, context)]
    if any(s.get("Effect") == "Deny" for s in matching):
        return False
    return any(s.get("Effect") == "Allow" for s in matching)


def trusts(statements: Iterable[Statement], provider_arn: str, claims: Mapping[str, str]) -> bool:
    """A role's trust policy: may a web identity of ``provider_arn`` whose token carries
    ``claims`` (e.g. GitHub's ``sub``) assume the role (``sts:AssumeRoleWithWebIdentity``)?"""

    def applies(statement: Statement) -> bool:
        federated = _list((statement.get("Principal") or {}).get("Federated", []))
        actions = _list(statement.get("Action", []))
        return (
            provider_arn in federated
            and any(_like(a, "sts:AssumeRoleWithWebIdentity", case=False) for a in actions)
            and _condition_holds(statement.get("Condition", {}), claims)
        )

    matching = [s for s in statements if applies(s)]
    return not any(s.get("Effect") == "Deny" for s in matching) and any(
        s.get("Effect") == "Allow" for s in matching
    )


# ---- statements from a synthesized template ---------------------------------------------------
# What `Ref` of a resource gives: its name, from this property.
_REF_NAME = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::CodeDeploy::Application": "ApplicationName",
    "AWS::CodeDeploy::DeploymentGroup": "DeploymentGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::ECR::Repository": "RepositoryName",
    "AWS::KinesisFirehose::DeliveryStream": "DeliveryStreamName",
}


@dataclass
class Names:
    """What the intrinsic functions of a template resolve to."""

    account: str
    region: str
    templates: list[dict[str, Any]]
    # The names CloudFormation makes up for resources the template leaves unnamed (a bucket
    # or a delivery stream without a name property): logical id -> the name a test gave it.
    physical: dict[str, str] = field(default_factory=dict)

    def resource(self, logical_id: str) -> dict[str, Any]:
        for template in self.templates:
            if logical_id in template["Resources"]:
                return dict(template["Resources"][logical_id])
        raise KeyError(f"no resource {logical_id} in the templates")

    def arn(self, logical_id: str) -> str:
        resource = self.resource(logical_id)
        kind, props = resource["Type"], resource.get("Properties", {})
        where = f"{self.region}:{self.account}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self._name(logical_id, props, 'BucketName')}"
        if kind == "AWS::KinesisFirehose::DeliveryStream":
            name = self._name(logical_id, props, "DeliveryStreamName")
            return f"arn:aws:firehose:{where}:deliverystream/{name}"
        if kind == "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{where}:log-group:{props['LogGroupName']}:*"
        if kind == "AWS::Lambda::Function":
            return f"arn:aws:lambda:{where}:function:{props['FunctionName']}"
        if kind == "AWS::ECR::Repository":
            return f"arn:aws:ecr:{where}:repository/{props['RepositoryName']}"
        if kind == "AWS::CodeDeploy::Application":
            return f"arn:aws:codedeploy:{where}:application:{props['ApplicationName']}"
        if kind == "AWS::IAM::OIDCProvider":
            return f"arn:aws:iam::{self.account}:oidc-provider/{props['Url'].split('://')[-1]}"
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{where}:{logical_id}"
        if kind == "AWS::KMS::Key":  # AWS makes up the key id: the logical id stands in for it
            return f"arn:aws:kms:{where}:key/{logical_id}"
        raise ValueError(f"cannot name the ARN of {kind} {logical_id}")

    def _name(self, logical_id: str, props: Mapping[str, Any], key: str) -> str:
        name = props.get(key) or self.physical.get(logical_id)
        if not isinstance(name, str):
            raise ValueError(f"{logical_id} has no {key}: give it one in Names.physical")
        return name

    def ref(self, name: str) -> str:
        pseudo = {"AWS::Partition": "aws", "AWS::Region": self.region,
                  "AWS::AccountId": self.account, "AWS::URLSuffix": "amazonaws.com"}  # fmt: skip
        if name in pseudo:
            return pseudo[name]
        resource = self.resource(name)
        if resource["Type"] == "AWS::IAM::OIDCProvider":  # its Ref is its ARN
            return self.arn(name)
        key = _REF_NAME.get(resource["Type"], "")
        value = resource.get("Properties", {}).get(key) or self.physical.get(name)
        if not isinstance(value, str):
            raise ValueError(f"cannot resolve Ref {name} ({resource['Type']})")
        return value

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "Ref" in node:
            return self.ref(node["Ref"])
        if "Fn::GetAtt" in node:
            logical_id, attribute = node["Fn::GetAtt"]
            if attribute != "Arn":
                raise ValueError(f"cannot resolve GetAtt {logical_id}.{attribute}")
            return self.arn(logical_id)
        if "Fn::Join" in node:
            separator, parts = node["Fn::Join"]
            return separator.join(str(self.value(p)) for p in parts)
        return {k: self.value(v) for k, v in node.items()}


def role_statements(names: Names, role_name: str) -> list[Statement]:
    """Every statement of a role's inline and attached (in-template) policies, with their
    intrinsic functions resolved. The role by its RoleName, or by the start of its logical id
    (CDK's ids of unnamed roles end in a hash).

    Raises:
        KeyError: no such role in the templates.
        ValueError: the role has AWS-managed policies (the gate cannot read them), or an
            intrinsic function the gate cannot resolve.
    """
    for template in names.templates:
        for logical_id, resource in template["Resources"].items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::IAM::Role" and (
                props.get("RoleName") == role_name or logical_id.startswith(role_name)
            ):
                if props.get("ManagedPolicyArns"):
                    raise ValueError(f"{role_name} has managed policies the gate cannot read")
                statements = [s for p in props.get("Policies", [])
                              for s in p["PolicyDocument"]["Statement"]]  # fmt: skip
                for policy in template["Resources"].values():
                    if policy["Type"] == "AWS::IAM::Policy" and {"Ref": logical_id} in policy[
                        "Properties"
                    ].get("Roles", []):
                        statements += policy["Properties"]["PolicyDocument"]["Statement"]
                return [names.value(s) for s in statements]
    raise KeyError(f"no role {role_name} in the templates")


# ---- requests as IAM sees them ----------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


def unused_grants(
    statements: Iterable[Statement],
    requests: Iterable[Request],
    *,
    ignore: Iterable[str] = (),
    per_resource: bool = True,
) -> list[str]:
    """Every grant of ``statements`` that no request of ``requests`` (e.g. a role's share of
    ``Gate.granted``) was allowed by, as ``"Sid action resource"`` (``"Sid action"`` when not
    ``per_resource``): what the role holds and the code run under it did not use.

    A grant is one action of an Allow statement on one of its resources (``per_resource``),
    its condition included; with ``per_resource=False``, one action on all of them. Actions
    matching a pattern of ``ignore`` (IAM wildcards, e.g. ``logs:*`` for calls the gate does
    not see) are not reported. A ``NotAction``/``NotResource`` statement cannot be split and
    counts as one grant.
    """
    seen = list(requests)
    skipped = list(ignore)
    unused = []
    for s in statements:
        if s.get("Effect") != "Allow":
            continue  # a Deny grants nothing
        actions = [None] if "NotAction" in s else _list(s.get("Action", []))
        resources = [None] if "NotResource" in s or not per_resource else None
        for action in actions:
            if action is not None and any(_like(p, action, case=False) for p in skipped):
                continue
            for resource in resources or _list(s.get("Resource", [])):
                one = dict(s)
                if action is not None:
                    one["Action"] = action
                if resource is not None:
                    one["Resource"] = resource
                if not any(allowed([one], r.action, r.resource, r.context) for r in seen):
                    what = action or f"NotAction {s['NotAction']}"
                    where = "" if resource is None else f" {resource}"
                    unused.append(f"{s.get('Sid', '')} {what}{where}")
    return unused


def s3_request(method: str, path: str, query: Mapping[str, list[str]],
               headers: Mapping[str, str]) -> list[Request]:  # fmt: skip
    """A path-style S3 request's authorizations (CopyObject needs two)."""
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    bucket_arn = f"arn:aws:s3:::{bucket}"
    prefix = {"s3:prefix": query.get("prefix", [""])[0]}
    if not key:
        if "versioning" in query:
            return [Request("s3:GetBucketVersioning" if method == "GET"
                            else "s3:PutBucketVersioning", bucket_arn)]  # fmt: skip
        if "versions" in query:
            return [Request("s3:ListBucketVersions", bucket_arn, prefix)]
        if "uploads" in query:
            return [Request("s3:ListBucketMultipartUploads", bucket_arn)]
        if "location" in query:
            return [Request("s3:GetBucketLocation", bucket_arn)]
        if method in ("GET", "HEAD"):
            return [Request("s3:ListBucket", bucket_arn, prefix)]
        if method == "PUT" and not query:
            return [Request("s3:CreateBucket", bucket_arn)]
        return [Request(f"s3:{method.title()}Bucket", bucket_arn)]
    object_arn = f"{bucket_arn}/{key}"
    versioned = "versionId" in query
    if method in ("GET", "HEAD"):
        if "uploadId" in query:  # ListParts
            return [Request("s3:ListMultipartUploadParts", object_arn)]
        if "tagging" in query:
            return [Request("s3:GetObjectVersionTagging" if versioned else "s3:GetObjectTagging",
                            object_arn)]  # fmt: skip
        return [Request("s3:GetObjectVersion" if versioned else "s3:GetObject", object_arn)]
    if method in ("PUT", "POST"):
        copy = headers.get("x-amz-copy-source")
        found = [Request("s3:PutObject", object_arn)]
        if copy:
            source, _, version = unquote(copy).lstrip("/").partition("?versionId=")
            found.append(Request("s3:GetObjectVersion" if version else "s3:GetObject",
                                 f"arn:aws:s3:::{source}"))  # fmt: skip
        return found
    if method == "DELETE":
        if "uploadId" in query:
            return [Request("s3:AbortMultipartUpload", object_arn)]
        return [Request("s3:DeleteObjectVersion" if versioned else "s3:DeleteObject", object_arn)]
    raise ValueError(f"S3 {method} {path} is not modelled by the gate")


_LAMBDA = re.compile(
    r"^/(?:[\d-]+)/functions/([^/]+)(?:/(configuration|invocations|aliases/[^/]+))?$"
)


def lambda_request(method: str, path: str, query: Mapping[str, list[str]], where: str
                   ) -> Request:  # fmt: skip
    match = _LAMBDA.match(unquote(path))
    if not match:
        raise ValueError(f"Lambda {method} {path} is not modelled by the gate")
    name, part = match.groups()
    name = name.split(":function:")[-1]
    function, _, qualifier = name.partition(":")
    qualifier = query.get("Qualifier", [qualifier])[0]
    arn = f"arn:aws:lambda:{where}:function:{function}" + (f":{qualifier}" if qualifier else "")
    if part == "configuration":
        return Request("lambda:GetFunctionConfiguration", arn)
    if part == "invocations":
        return Request("lambda:InvokeFunction", arn)
    if part and part.startswith("aliases/"):
        alias = part.split("/", 1)[1]
        action = "lambda:GetAlias" if method == "GET" else "lambda:UpdateAlias"
        return Request(action, f"arn:aws:lambda:{where}:function:{function}:{alias}")
    return Request("lambda:GetFunction", arn)


# ---- the proxy --------------------------------------------------------------------------------
@dataclass
class Gate:
    """``roles``: role name -> statements. ``upstreams``: service (s3, lambda, codedeploy, kms,
    firehose, monitoring) -> http://host:port. ``deployment_groups``: deploymentId ->
    (application, group), for CodeDeploy's resource-level checks. ``kms_keys``: a KeyId as
    callers send it (an alias) -> the key's ARN as the policies name it (AWS authorizes a
    call by alias on the key)."""

    roles: dict[str, list[Statement]]
    upstreams: dict[str, str]
    account: str
    region: str
    deployment_groups: dict[str, tuple[str, str]] = field(default_factory=dict)
    kms_keys: dict[str, str] = field(default_factory=dict)
    refused: list[Request] = field(default_factory=list)  # every refusal, for the tests
    granted: list[tuple[str, Request]] = field(default_factory=list)  # (role, request) allowed
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://{loopback_http.address(self.server)}"

    @staticmethod
    def credentials(role: str) -> dict[str, str]:
        """Environment variables for code that runs as ``role`` through this gate."""
        key = "GATE" + re.sub(r"[^A-Z0-9]", "", role.upper())
        return {"AWS_ACCESS_KEY_ID": f"{key}:{role}"[:128], "AWS_SECRET_ACCESS_KEY": "gate",
                "AWS_SESSION_TOKEN": "gate"}  # fmt: skip

    def decide(self, role: str, service: str, method: str, path: str,
               query: dict[str, list[str]], headers: Mapping[str, str], body: bytes,
               ) -> tuple[list[Request], bool]:  # fmt: skip
        where = f"{self.region}:{self.account}"
        if service == "s3":
            requests = s3_request(method, path, query, headers)
        elif service == "lambda":
            requests = [lambda_request(method, path, query, where)]
        elif service == "codedeploy":
            requests = [self._codedeploy(headers.get("x-amz-target", ""), json.loads(body), where)]
        elif service == "kms":  # the JSON protocol: X-Amz-Target TrentService.<Operation>
            operation = headers.get("x-amz-target", "").rsplit(".", 1)[-1]
            key = str(json.loads(body).get("KeyId", ""))
            requests = [Request(f"kms:{operation}", self.kms_keys.get(key, key))]
        elif service == "firehose":  # the JSON protocol: X-Amz-Target Firehose_20150804.<Op>
            operation = headers.get("x-amz-target", "").rsplit(".", 1)[-1]
            stream = str(json.loads(body).get("DeliveryStreamName", ""))
            arn = f"arn:aws:firehose:{where}:deliverystream/{stream}"
            requests = [Request(f"firehose:{operation}", arn)]
        elif service == "monitoring":  # CloudWatch: no resource-level permissions for reads
            operation = path.rstrip("/").rsplit("/", 1)[-1]  # smithy-rpc-v2-cbor: .../operation/X
            if "operation" not in path:  # the JSON or query protocol
                form = parse_qs(body.decode(errors="replace"))
                target = headers.get("x-amz-target", "").rsplit(".", 1)[-1]
                operation = target or form.get("Action", [""])[0]
            requests = [Request(f"cloudwatch:{operation}", "*")]
        elif service == "sts":
            return [], True  # GetCallerIdentity needs no permission
        else:
            raise ValueError(f"service {service} is not modelled by the gate")
        statements = self.roles.get(role, [])
        denied = [r for r in requests if not allowed(statements, r.action, r.resource, r.context)]
        self.refused += denied
        self.granted += [(role, r) for r in requests if r not in denied]
        return requests, not denied

    def _codedeploy(self, target: str, body: dict[str, Any], where: str) -> Request:
        operation = target.split(".")[-1]
        if operation in ("GetDeployment", "PutLifecycleEventHookExecutionStatus"):
            app, group = self.deployment_groups[body["deploymentId"]]
            return Request(f"codedeploy:{operation}",
                           f"arn:aws:codedeploy:{where}:deploymentgroup:{app}/{group}")  # fmt: skip
        if operation == "GetApplicationRevision":
            application = f"arn:aws:codedeploy:{where}:application:{body['applicationName']}"
            return Request("codedeploy:GetApplicationRevision", application)
        raise ValueError(f"CodeDeploy {operation} is not modelled by the gate")

    def may_list(self, role: str, bucket: str) -> bool:
        return allowed(self.roles.get(role, []), "s3:ListBucket", f"arn:aws:s3:::{bucket}")

    def start(self) -> Gate:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                found = _CREDENTIAL.search(self.headers.get("Authorization", ""))
                url = urlparse(self.path)
                query = parse_qs(url.query, keep_blank_values=True)
                if found is None:
                    self._refuse("s3", "the gate serves signed requests only")
                    return
                role, service = found.group(1).partition(":")[2], found.group(3)
                try:
                    requests, ok = gate.decide(role, service, self.command, url.path, query,
                                               {k.lower(): v for k, v in self.headers.items()},
                                               body)  # fmt: skip
                except ValueError as exc:
                    self._refuse(service, str(exc))
                    return
                if not ok:
                    self._refuse(service, f"{role} is not authorized: {requests}")
                    return
                status, headers, answer = self._forward(service, body)
                read = requests[0].action in ("s3:GetObject", "s3:GetObjectVersion")
                if (
                    service == "s3"
                    and status == 404
                    and read
                    and not gate.may_list(role, unquote(url.path).lstrip("/").split("/")[0])
                ):
                    # S3: without s3:ListBucket a missing key is not told apart from a refusal.
                    self._refuse("s3", "Access Denied")
                    return
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer)

            def _forward(self, service: str, body: bytes) -> tuple[int, Any, bytes]:
                upstream = urlparse(gate.upstreams[service])
                connection = http.client.HTTPConnection(str(upstream.hostname), upstream.port,
                                                        timeout=120)  # fmt: skip
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = upstream.netloc
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                connection.close()
                return response.status, response.getheaders(), data

            def _refuse(self, service: str, message: str) -> None:
                if service == "s3":
                    body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied"
                            f"</Code><Message>{message}</Message></Error>").encode()  # fmt: skip
                    headers = {"Content-Type": "application/xml"}
                else:
                    body = json.dumps({"__type": "AccessDeniedException", "message": message,
                                       "Message": message}).encode()  # fmt: skip
                    headers = {"Content-Type": "application/x-amz-json-1.1",
                               "x-amzn-ErrorType": "AccessDeniedException"}  # fmt: skip
                self.send_response(403)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = loopback_http.serve(Handler, "127.0.0.1")
        return self

    def stop(self) -> None:
        loopback_http.stop(self.server)
