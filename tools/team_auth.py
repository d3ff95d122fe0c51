"""The team server's roles, enforced inside MLflow's basic-auth app: the ``authorization_function``
its config names (tools/tracking_server.py writes it). MLflow calls it before every protected
request; it authenticates as MLflow's own basic auth does, then refuses what the caller's role
may not do, whatever MLflow's permissions say.

Why a hook and not MLflow's permission configuration: a grant is READ, EDIT or MANAGE on a
whole experiment or registered model, so it cannot tell the alias ``candidate`` from
``champion`` nor a release tag from another tag; and MLflow gives whoever creates an
experiment or a model MANAGE on it (an after-request hook), which includes deleting it. The
grants (tools/tracking_server.py) give each role EDIT everywhere; this module takes away what
the approval process reserves:

| request                                         | data scientist | ci  | admin |
|-------------------------------------------------|----------------|-----|-------|
| create experiments, runs, models, versions       | yes            | yes | yes   |
| set the alias ``candidate``                      | yes            | yes | yes   |
| set a tag that is not a release tag              | yes            | yes | yes   |
| set the alias ``champion`` (or any other)        | no             | yes | yes   |
| set a release tag (at creation or after)         | no             | yes | yes   |
| change ``artifact_sha256`` after creation        | no             | no  | yes   |
| delete anything (a tag, an alias, a version...)  | no             | no  | yes   |
| rename a model; manage users, roles, permissions | no             | no  | yes   |

A user's role is the MLflow role of that name assigned to it (tools/tracking_server.py assigns
them); a user with neither role is held to the data scientist's rules.

It also keeps one version per bundle: two trainers registering the same bytes at once end with
one version (``one_version_per_bytes``).

Runs in the MLflow server's process, which imports it at its first request; importing it also
starts tools/team_watchdog.py there.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

from tools import team_watchdog
from training.mlflow_names import (
    ARTIFACT_SHA256,
    CANDIDATE,
    PROMOTED_AT,
    S3_URI,
    S3_VERSION_ID,
)

SCIENTIST, CI = "data-scientist", "ci"  # MLflow role names, and the users that hold them
ROLES = (SCIENTIST, CI)
RELEASE_TAGS = {S3_URI, S3_VERSION_ID, PROMOTED_AT}  # written by promotion (registry/)
RELEASE_TAG_PREFIX = "promoted_"
ROLE_CACHE_SECONDS = 60  # as the login cache: a changed role applies within a minute
ROUTE = re.compile(r"^/(?:ajax-)?api/\d+\.\d+/(?:preview/)?mlflow(?:-artifacts)?/(.*)$")
VERSION_TAGS = {"model-versions/set-tag", "registered-models/set-tag"}
ADMIN_ONLY = ("registered-models/rename", "model-versions/transition-stage")

team_watchdog.start()


def authenticate() -> Any:
    """MLflow's basic auth, then the caller's role: a Flask ``Authorization``, or the 401 or
    403 response to send instead. MLflow calls it again from its permission checks within
    the same request: the first answer is kept for the request (``flask.g``), so the rules
    run, and a version's claim is taken, once."""
    from flask import g

    if "waterml_auth" not in g:
        g.waterml_auth = _authenticate()
    return g.waterml_auth


def _authenticate() -> Any:
    from flask import request
    from mlflow.server import auth

    login = auth.authenticate_request_basic_auth()
    if not hasattr(login, "username"):  # a 401 response
        return login
    username = str(login.username)
    refusal = refused(
        request.method, request.path, lambda: _params(request), lambda: role_of(username)
    )
    if refusal is not None:
        return _error(403, "PERMISSION_DENIED", f"Permission denied: {refusal}")
    return one_version_per_bytes(request) or login


_claims: dict[tuple[str, str], threading.Lock] = {}
_claims_lock = threading.Lock()
CLAIM_WAIT_SECONDS = 120.0


def one_version_per_bytes(request: Any) -> Any:
    """A ``model-versions/create`` whose ``artifact_sha256`` tag a version of the model already
    carries is refused (409 RESOURCE_ALREADY_EXISTS, naming that version; training then says
    it reused it). Two creates of the same bytes run one after the other (a lock per model
    and digest in this process: the server has one worker), so the second sees the first's
    version. None when the request may go on."""
    from flask import after_this_request

    found = ROUTE.match(request.path)
    if found is None or found.group(1) != "model-versions/create" or request.method != "POST":
        return None
    params = _params(request)
    name = str(params.get("name", ""))
    digests = [str(t.get("value", "")) for t in params.get("tags") or []
               if isinstance(t, dict) and t.get("key") == ARTIFACT_SHA256]  # fmt: skip
    if not digests or not re.fullmatch(r"[0-9a-f]{64}", digests[0]) or "'" in name:
        return None
    digest = digests[0]
    with _claims_lock:
        claim = _claims.setdefault((name, digest), threading.Lock())
    if not claim.acquire(timeout=CLAIM_WAIT_SECONDS):
        return _error(
            503, "TEMPORARILY_UNAVAILABLE", f"another version of {name!r} is being created"
        )
    try:
        from mlflow.server.handlers import _get_model_registry_store

        held = _get_model_registry_store().search_model_versions(
            f"name = '{name}' and tags.{ARTIFACT_SHA256} = '{digest}'", max_results=1
        )
    except BaseException:
        claim.release()
        raise
    if held:
        claim.release()
        return _error(409, "RESOURCE_ALREADY_EXISTS", f"version {held[0].version} of {name!r} "
                      f"already holds {ARTIFACT_SHA256} {digest}")  # fmt: skip

    @after_this_request
    def release(response: Any) -> Any:  # the version exists (or failed) by now
        claim.release()
        return response

    return None


def refused(method: str, path: str, params: Any, role: Any) -> str | None:
    """Why a request is refused (one sentence), or None. ``params()`` is called only for the
    few routes whose body matters (reading a body consumes it: an artifact upload's stream
    must stay unread), ``role()`` only for a request a role restricts ("admin", CI,
    SCIENTIST or None)."""
    found = ROUTE.match(path)
    if found is None:
        return None
    route = found.group(1)
    rule = _rule(method, route, params)
    if rule is None:
        return None
    who = role()
    if who == "admin":
        return None
    return rule(who or SCIENTIST)


def _rule(method: str, route: str, read_params: Any) -> Any:
    """The check a request needs, as a function of the caller's role, or None."""
    if "permissions" in route.split("/") or route.startswith(("roles", "users")):
        if route in ("users/get", "users/current") or method == "GET":
            return None
        return lambda role: "managing users, roles and permissions is the admin's"
    if route == "registered-models/alias" and method == "POST":
        alias = str(read_params().get("alias", ""))
        return lambda role: (None if role == CI or alias == CANDIDATE else
                             f"the {role} role may not move the alias {alias!r}")  # fmt: skip
    if route in VERSION_TAGS and method == "POST":
        key = str(read_params().get("key", ""))
        if key == ARTIFACT_SHA256:
            return lambda role: f"{ARTIFACT_SHA256} is set when a version is created, never after"
        if _is_release_tag(key):
            return lambda role: None if role == CI else f"the release tag {key!r} is ci's to write"
        return None
    if route == "model-versions/create" and method == "POST":
        given = read_params().get("tags") or []
        tags = [str(t.get("key", "")) for t in given if isinstance(t, dict)]
        forged = [k for k in tags if _is_release_tag(k)]
        if forged:
            return lambda role: (
                None if role == CI else f"the release tag {forged[0]!r} is ci's to write"
            )
        return None
    if route in ADMIN_ONLY or _is_deletion(method, route):
        return lambda role: f"{method} {route}: deleting and renaming are the admin's"
    return None


def _is_deletion(method: str, route: str) -> bool:
    return method == "DELETE" or "delete" in route.rsplit("/", 1)[-1]


def _is_release_tag(key: str) -> bool:
    return key in RELEASE_TAGS or key.startswith(RELEASE_TAG_PREFIX)


def _params(request: Any) -> dict[str, Any]:
    """The request's parameters: its query string and its JSON body (MLflow's client sends
    a DELETE's parameters either way). Only for MLflow's small JSON requests."""
    body = request.get_json(force=True, silent=True)
    return dict(request.args) | (body if isinstance(body, dict) else {})


_roles: dict[str, tuple[float, str | None]] = {}
_roles_lock = threading.Lock()


def role_of(username: str) -> str | None:
    """ "admin", the first of ROLES assigned to the user, or None; cached for a minute."""
    now = time.monotonic()
    with _roles_lock:
        cached = _roles.get(username)
    if cached is not None and now - cached[0] < ROLE_CACHE_SECONDS:
        return cached[1]
    from mlflow.server.auth import store

    user = store.get_user(username)
    names = {r.name for r in store.list_user_roles(user.id)}
    found = "admin" if user.is_admin else next((r for r in ROLES if r in names), None)
    with _roles_lock:
        _roles[username] = (now, found)
    return found


def _error(status: int, code: str, message: str) -> Any:
    """A response MLflow's client raises as MlflowException(error_code=code)."""
    from flask import Response

    body = {"error_code": code, "message": message}
    return Response(json.dumps(body), status=status, mimetype="application/json")
