"""The permission table of the team server (tools/team_auth.py; training/README.md, "Solo or
team"), one test per cell, over HTTP against the session's private stack: each user does the
row's action through MLflow's REST API, and the server allows it (200) or refuses it (403) as
the table says. A data scientist who created a model still may not delete it: MLflow makes the
creator its MANAGE owner, and that used to let them (HTTP 200)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tools import tracking_server
from tools.tracking_server import ADMIN, CI, SCIENTIST

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"


class Caller:
    """One user's REST calls to the stack; each returns the HTTP status."""

    def __init__(self, stack: tracking_server.Stack, user: str) -> None:
        self.uri = stack.uri
        self.http = requests.Session()
        self.http.auth = (user, stack.credentials.password(user))

    def __call__(self, method: str, path: str, **body: Any) -> requests.Response:
        where = path if path.startswith("/") else f"{API}/{path}"
        return self.http.request(method, f"{self.uri}{where}", json=body, timeout=60)

    def ok(self, method: str, path: str, **body: Any) -> dict[str, Any]:
        answer = self(method, path, **body)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


def fresh(admin: Caller, owner: Caller | None = None) -> dict[str, str]:
    """An experiment, a run and a model with one version, made by ``owner`` (else the admin);
    the version carries the release tags promotion writes."""
    who = owner or admin
    name = f"roles-{uuid.uuid4().hex[:10]}"
    experiment = who.ok("POST", "experiments/create", name=name)["experiment_id"]
    run = who.ok("POST", "runs/create", experiment_id=experiment)["run"]["info"]["run_id"]
    who.ok("POST", "registered-models/create", name=name)
    who.ok("POST", "model-versions/create", name=name, source=f"runs:/{run}/model", run_id=run)
    for key in ("s3_version_id", "promoted_at"):
        admin.ok("POST", "model-versions/set-tag", name=name, version="1", key=key, value="x")
    admin.ok("POST", "registered-models/alias", name=name, alias="champion", version="1")
    return {"name": name, "experiment": experiment, "run": run}


def statuses(*answers: requests.Response) -> set[int]:
    return {a.status_code for a in answers}


def create(me: Caller, admin: Caller) -> set[int]:
    name = f"roles-{uuid.uuid4().hex[:10]}"
    experiment = me("POST", "experiments/create", name=name)
    run = me("POST", "runs/create", experiment_id=experiment.json().get("experiment_id"))
    model = me("POST", "registered-models/create", name=name)
    run_id = run.json().get("run", {}).get("info", {}).get("run_id")
    version = me("POST", "model-versions/create", name=name, source=f"runs:/{run_id}/model",
                 run_id=run_id)  # fmt: skip
    return statuses(experiment, run, model, version)


def alias(which: str) -> Callable[[Caller, Caller], set[int]]:
    def act(me: Caller, admin: Caller) -> set[int]:
        made = fresh(admin)
        return statuses(me("POST", "registered-models/alias", name=made["name"], alias=which,
                           version="1"))  # fmt: skip

    return act


def tag(key: str) -> Callable[[Caller, Caller], set[int]]:
    def act(me: Caller, admin: Caller) -> set[int]:
        made = fresh(admin)
        return statuses(me("POST", "model-versions/set-tag", name=made["name"], version="1",
                           key=key, value="forged"))  # fmt: skip

    return act


def remove(me: Caller, admin: Caller) -> set[int]:
    made = fresh(admin)
    admin.ok("POST", "model-versions/set-tag", name=made["name"], version="1", key="note",
             value="x")  # fmt: skip
    return statuses(
        me("DELETE", "registered-models/alias", name=made["name"], alias="champion"),
        me("DELETE", "model-versions/delete-tag", name=made["name"], version="1", key="note"),
    )


def release_tag_at_creation(me: Caller, admin: Caller) -> set[int]:
    made = fresh(admin)
    forged = [{"key": "s3_version_id", "value": "forged"}]
    return statuses(me("POST", "model-versions/create", name=made["name"], tags=forged,
                       source=f"runs:/{made['run']}/model", run_id=made["run"]))  # fmt: skip


def delete(me: Caller, admin: Caller, owner: Caller | None = None) -> set[int]:
    made = fresh(admin, owner)
    return statuses(
        me("DELETE", "model-versions/delete", name=made["name"], version="1"),
        me("POST", "runs/delete", run_id=made["run"]),
        me("POST", "registered-models/rename", name=made["name"], new_name=made["name"] + "-x"),
        me("DELETE", "registered-models/delete", name=made["name"] + "-x")
        if me is admin
        else me("DELETE", "registered-models/delete", name=made["name"]),
        me("POST", "experiments/delete", experiment_id=made["experiment"]),
    )


def delete_own(me: Caller, admin: Caller) -> set[int]:
    """What the user made itself (MLflow's creator MANAGE grant), it may not delete either."""
    return delete(me, admin, owner=me)


def manage_users(me: Caller, admin: Caller) -> set[int]:
    user = f"u{uuid.uuid4().hex[:8]}"
    created = me("POST", "users/create", username=user, password=uuid.uuid4().hex)
    made = fresh(admin)
    granted = me("POST", "/api/3.0/mlflow/users/permissions/grant", username=SCIENTIST,
                 resource_type="registered_model", resource_id=made["name"],
                 permission="MANAGE")  # fmt: skip
    return statuses(created, granted)


ALLOWED, REFUSED = {200}, {403}
USERS = (SCIENTIST, CI, ADMIN)
# The README's table, cell by cell: what each user may do (yes: 200, no: 403).
TABLE: dict[str, tuple[Callable[[Caller, Caller], set[int]], str]] = {
    #                                                               scientist  ci   admin
    "create experiments, runs, models, versions": (create,                  "yes yes yes"),
    "set the alias candidate": (alias("candidate"),                         "yes yes yes"),
    "set a tag that is not a release tag": (tag("reviewed_by"),             "yes yes yes"),
    "set the alias champion": (alias("champion"),                           "no  yes yes"),
    "set another alias": (alias("staging"),                                 "no  yes yes"),
    "set the release tag s3_version_id": (tag("s3_version_id"),             "no  yes yes"),
    "set a promoted_* tag": (tag("promoted_by"),                            "no  yes yes"),
    "create a version with a release tag": (release_tag_at_creation,        "no  yes yes"),
    "change artifact_sha256 after creation": (tag("artifact_sha256"),       "no  no  yes"),
    "remove an alias or a tag": (remove,                                    "no  no  yes"),
    "delete a version, run, model or experiment; rename": (delete,          "no  no  yes"),
    "delete what the user created itself": (delete_own,                     "no  no  yes"),
    "manage users and permissions": (manage_users,                          "no  no  yes"),
}  # fmt: skip


@pytest.mark.parametrize("user", [SCIENTIST, CI, ADMIN])
@pytest.mark.parametrize("action", list(TABLE))
def test_permission_table(team_stack: tracking_server.Stack, action: str, user: str) -> None:
    act, cells = TABLE[action]
    allowed = dict(zip(USERS, cells.split(), strict=True))[user] == "yes"
    admin = Caller(team_stack, ADMIN)
    me = admin if user == ADMIN else Caller(team_stack, user)
    assert act(me, admin) == (ALLOWED if allowed else REFUSED)


def test_a_refusal_names_the_rule(team_stack: tracking_server.Stack) -> None:
    admin, scientist = Caller(team_stack, ADMIN), Caller(team_stack, SCIENTIST)
    made = fresh(admin)
    answer = scientist("POST", "registered-models/alias", name=made["name"], alias="champion",
                       version="1")  # fmt: skip
    assert answer.status_code == 403
    assert answer.json() == {
        "error_code": "PERMISSION_DENIED",
        "message": "Permission denied: the data-scientist role may not move the alias 'champion'",
    }
