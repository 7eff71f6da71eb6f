"""Every practitioner route x (anonymous, the owner X, another practitioner Y).

Y must get exactly what an unknown id gets (404), anonymous gets 401 (or the login
page), and X gets through. A route added to the app without a row here fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.routing import Route

from conftest import Harness

# (method, path, body); {patient} {routine} {assignment} are X's objects.
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/exercises", None),
    ("POST", "/api/exercises", {"name": "Own stretch"}),
    ("GET", "/api/routines", None),
    ("POST", "/api/routines", {"name": "R"}),
    ("GET", "/api/routines/{routine}", None),
    ("PUT", "/api/routines/{routine}", {"name": "R2", "items": []}),
    ("DELETE", "/api/routines/{routine}", None),
    ("GET", "/api/patients", None),
    ("POST", "/api/patients", {"name": "P", "timezone": "Europe/Paris"}),
    ("GET", "/api/patients/{patient}", None),
    ("PATCH", "/api/patients/{patient}", {"name": "New name"}),
    ("DELETE", "/api/patients/{patient}", None),
    ("POST", "/api/patients/{patient}/invites", {}),
    ("GET", "/api/patients/{patient}/devices", None),
    ("DELETE", "/api/patients/{patient}/devices/{device}", None),
    ("GET", "/api/patients/{patient}/assignments", None),
    ("POST", "/api/patients/{patient}/assignments", "assignment"),
    ("DELETE", "/api/assignments/{assignment}", None),
    ("GET", "/api/patients/{patient}/sessions", None),
    ("POST", "/api/patients/{patient}/sessions", {"date": "2026-03-01"}),
    ("GET", "/", None),
    ("GET", "/patients", None),
    ("POST", "/patients", {"name": "P", "timezone": "Europe/Paris"}),
    ("GET", "/patients/{patient}", None),
    ("POST", "/patients/{patient}", {"action": "save", "name": "N"}),
    ("POST", "/patients/{patient}/invite", {}),
    ("POST", "/patients/{patient}/devices/{device}/revoke", {}),
    ("POST", "/patients/{patient}/sessions", {"date": "2026-03-01"}),
    ("GET", "/patients/{patient}/assign", None),
    ("POST", "/patients/{patient}/assign", "assignment"),
    ("POST", "/assignments/{assignment}/end", {}),
    ("GET", "/routines", None),
    ("POST", "/routines", {"name": "R"}),
    ("GET", "/routines/{routine}", None),
    ("POST", "/routines/{routine}", {"action": "save", "name": "R3"}),
    ("GET", "/exercises", None),
    ("POST", "/exercises", {"name": "Mine", "sides": "none"}),
    ("GET", "/api/patients/{patient}/progress", None),
    ("GET", "/api/patients/{patient}/completions.csv", None),
    ("GET", "/assignments/{assignment}/print", None),
]

# Routes that are public or belong to the patient side (tested in their own files).
NOT_PRACTITIONER = ("/api/auth/", "/login", "/logout", "/static", "/openapi.json", "/api/me", "/api/join",
                    "/join/", "/app", "/manifest.webmanifest", "/sw.js", "/api/push/public-key", "/healthz",
                    "/calendar/")
OWNED = ("{patient}", "{routine}", "{assignment}", "{device}")


def test_every_practitioner_route_is_in_the_matrix(harness: Harness) -> None:
    listed = {(m, p) for m, p, _ in ROUTES}
    for route in harness.client.app.routes:
        if not isinstance(route, Route) or route.path.startswith(NOT_PRACTITIONER):
            continue
        path = route.path.replace("{id}", "{x}").replace("{device_id}", "{x}")
        for method in route.methods - {"HEAD"}:
            assert any(m == method and p.replace("{patient}", "{x}").replace("{routine}", "{x}")
                       .replace("{assignment}", "{x}").replace("{device}", "{x}") == path for m, p in listed), (method, route.path)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_matrix(harness: Harness, method: str, path: str, body: Any) -> None:
    x = harness.practitioner("x@clinic.example")
    y = harness.practitioner("y@clinic.example")
    patient = harness.patient(x, name="Xanthe Quill")
    routine = harness.routine(x, name="Xylophone routine")
    assignment = harness.assignment(x, patient["id"], routine["id"])
    device = harness.device(x, patient["id"])
    if body == "assignment":
        body = {"routine_id": routine["id"], "start_date": "2026-03-02", "days": ["mon"], "times": ["08:00"]}
    url = path.format(patient=patient["id"], routine=routine["id"], assignment=assignment["id"], device=device)
    api = path.startswith("/api/")

    def call(headers: dict[str, str]) -> Any:
        kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
        if body is not None:
            kwargs["json" if api else "data"] = body
        return harness.client.request(method, url, **kwargs)

    anonymous = call({})
    if api:
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthorized"
    else:
        assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")

    owns_object = any(k in path for k in OWNED)
    for who in ([y["bearer"], y["cookie"]] if api else [y["cookie"]]):
        other = call(who)
        if owns_object:
            assert other.status_code == 404, other.text
            unknown = harness.client.request(method, path.format(patient=999999, routine=999999, assignment=999999, device=999999),
                                             headers=who, follow_redirects=False,
                                             **({"json" if api else "data": body} if body is not None else {}))
            assert unknown.status_code == 404
            assert other.content == unknown.content  # indistinguishable from an unknown id
        else:
            assert other.status_code in (200, 201, 204, 303)
            # Y's view never contains X's things.
            assert "Xanthe" not in other.text and "Xylophone" not in other.text

    owner = call(x["bearer"] if api else x["cookie"])
    assert owner.status_code in (200, 201, 204, 303), owner.text


def test_lists_never_leak_across_practitioners(harness: Harness) -> None:
    x = harness.practitioner("x@clinic.example")
    y = harness.practitioner("y@clinic.example")
    harness.patient(x, name="Xavier")
    harness.routine(x, name="X routine")
    harness.post(x, "/api/exercises", {"name": "X secret stretch"})
    for path, key in (("/api/patients", "patients"), ("/api/routines", "routines"), ("/api/exercises", "exercises")):
        listed = harness.client.get(path, headers=y["bearer"]).json()[key]
        assert not any(item["name"].startswith("X") for item in listed), path
    assert harness.client.post("/api/routines", headers=y["bearer"], json={
        "name": "steal", "items": [{"exercise_id": harness.client.get("/api/exercises", headers=x["bearer"]).json()["exercises"][-1]["id"]}],
    }).status_code == 400
