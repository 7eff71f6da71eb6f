"""No input, however malformed, produces a 500: every JSON route answers 4xx with the error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conftest import Harness

BODY_ROUTES = [
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/tokens"),
    ("POST", "/api/exercises"),
    ("POST", "/api/routines"),
    ("PUT", "/api/routines/{routine}"),
    ("POST", "/api/patients"),
    ("PATCH", "/api/patients/{patient}"),
    ("POST", "/api/patients/{patient}/assignments"),
    ("POST", "/api/patients/{patient}/sessions"),
]

FIELDS = ["name", "email", "password", "label", "summary", "steps", "safety", "hold_seconds", "reps", "sets",
          "sides", "items", "notes", "timezone", "archived", "routine_id", "start_date", "end_date", "days",
          "times", "session_date", "note", "date"]

WEIRD_VALUES: list[Any] = [
    None, True, -1, 0, 2**70, 1.5, "", " ", "x" * 100_00, "\x00", "2026-13-45", "25:99", "Mars/Olympus",
    [], [None], [{}], [[1]], {}, {"a": 1}, ["mon"] * 50, [{"exercise_id": "1"}], [{"exercise_id": 2**70}],
    "../../etc/passwd", "<script>alert(1)</script>", "NaN", float("inf"), "\ud800 lone surrogate",
]

RAW_BODIES = [b"", b"not json", b"[1,2]", b'"a string"', b"42", b"null", b"{", b'{"a":' * 5000, b"\xff\xfe"]


def ids(harness: Harness) -> tuple[dict[str, Any], dict[str, str]]:
    me = harness.practitioner("ann@clinic.example")
    patient = harness.patient(me)
    routine = harness.routine(me)
    return me, {"patient": str(patient["id"]), "routine": str(routine["id"])}


def assert_clean_4xx(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and isinstance(error["fields"], dict)


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_raw_garbage_bodies(harness: Harness, method: str, path: str) -> None:
    me, values = ids(harness)
    url = path.format(**values)
    for raw in RAW_BODIES:
        response = harness.client.request(method, url, content=raw, headers={**me["bearer"], "Content-Type": "application/json"})
        assert_clean_4xx(response)
        if raw in (b"not json", b"{"):
            assert "body" in response.json()["error"]["fields"]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_wrong_types_in_every_field(harness: Harness, method: str, path: str) -> None:
    me, values = ids(harness)
    url = path.format(**values)
    for field in FIELDS:
        for value in WEIRD_VALUES:
            body = json.dumps({field: value}, allow_nan=True)
            response = harness.client.request(method, url, content=body, headers={**me["bearer"], "Content-Type": "application/json"})
            # A string that is a fine name, or a PATCH of one valid field, may succeed; nothing else may.
            if response.status_code < 400:
                assert method == "PATCH" or (isinstance(value, str) and field in ("name", "label")), (field, value)
                continue
            assert_clean_4xx(response)


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_oversized_body_is_413(harness: Harness, method: str, path: str) -> None:
    me, values = ids(harness)
    response = harness.client.request(method, path.format(**values), content=b'{"name": "' + b"x" * 70_000 + b'"}',
                                      headers={**me["bearer"], "Content-Type": "application/json"})
    assert response.status_code == 413
    assert_clean_4xx(response)


@pytest.mark.parametrize("bad_id", ["abc", "-1", "0", "99999999999999999999999", "1.5", "%00"])
def test_bad_ids_are_not_found(harness: Harness, bad_id: str) -> None:
    me, _ = ids(harness)
    for path in ("/api/patients/{}", "/api/routines/{}", "/api/patients/{}/assignments", "/api/patients/{}/sessions"):
        assert_clean_4xx(harness.client.get(path.format(bad_id), headers=me["bearer"]))


def test_unknown_api_route_and_method_use_the_error_shape(harness: Harness) -> None:
    me, _ = ids(harness)
    assert_clean_4xx(harness.client.get("/api/nothing-here", headers=me["bearer"]))
    response = harness.client.request("PATCH", "/api/exercises", headers=me["bearer"], json={})
    assert response.status_code == 405
    assert_clean_4xx(response)


def test_form_routes_reject_garbage_without_500(harness: Harness) -> None:
    me, values = ids(harness)
    for url in ("/patients", f"/patients/{values['patient']}", f"/patients/{values['patient']}/sessions",
                f"/patients/{values['patient']}/assign", "/routines", f"/routines/{values['routine']}", "/exercises"):
        for data in ({}, {"name": "x" * 5000}, {"action": "explode"}, {"date": "nope", "days": "never", "times": "99:99"},
                     {"action": "add", "exercise_id": "99999999"}, {"action": "up", "index": "-4"}):
            response = harness.client.post(url, data=data, headers=me["cookie"], follow_redirects=False)
            assert response.status_code in (303, 400), (url, data, response.status_code)
