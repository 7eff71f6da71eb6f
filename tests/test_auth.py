"""Practitioner sign-in, sessions, API tokens, the login rate limit and cross-site protection."""

from __future__ import annotations

from conftest import PASSWORD, Clock, Harness


def test_json_login_sets_a_signed_httponly_cookie(harness: Harness) -> None:
    harness.practitioner("ann@clinic.example")
    response = harness.client.post("/api/auth/login", json={"email": "ann@clinic.example", "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["practitioner"]["email"] == "ann@clinic.example"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert harness.client.get("/api/patients").status_code == 200
    assert harness.client.post("/api/auth/logout").status_code == 204
    harness.client.cookies.clear()
    assert harness.client.get("/api/patients").status_code == 401


def test_logout_ends_the_session_on_the_server(harness: Harness) -> None:
    harness.practitioner("ann@clinic.example")
    harness.client.post("/api/auth/login", json={"email": "ann@clinic.example", "password": PASSWORD})
    stolen = dict(harness.client.cookies)
    harness.client.post("/api/auth/logout")
    harness.client.cookies.clear()
    cookie = "; ".join(f"{k}={v}" for k, v in stolen.items())
    assert harness.client.get("/api/patients", headers={"Cookie": cookie}).status_code == 401


def test_tampered_cookie_is_refused(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    value = me["cookie"]["Cookie"]
    assert harness.client.get("/api/patients", headers=me["cookie"]).status_code == 200
    assert harness.client.get("/api/patients", headers={"Cookie": value[:-2] + "xx"}).status_code == 401


def test_wrong_password_is_401_with_the_error_shape(harness: Harness) -> None:
    harness.practitioner("ann@clinic.example")
    response = harness.client.post("/api/auth/login", json={"email": "ann@clinic.example", "password": "nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_login_is_limited_after_five_failures_until_the_window_passes(harness: Harness, clock: Clock) -> None:
    harness.practitioner("ann@clinic.example")
    bad = {"email": "ann@clinic.example", "password": "wrong"}
    for _ in range(5):
        assert harness.client.post("/api/auth/login", json=bad).status_code == 401
    good = {"email": "ann@clinic.example", "password": PASSWORD}
    limited = harness.client.post("/api/auth/login", json=good)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    # Another account is not affected.
    harness.practitioner("bob@clinic.example")
    assert harness.client.post("/api/auth/login", json={"email": "bob@clinic.example", "password": PASSWORD}).status_code == 200
    clock.advance(minutes=14)
    assert harness.client.post("/api/auth/login", json=good).status_code == 429
    clock.advance(minutes=2)
    assert harness.client.post("/api/auth/login", json=good).status_code == 200


def test_rate_limit_is_shared_through_the_database(harness: Harness, settings, clock: Clock) -> None:
    """A second app (another server process) over the same file sees the same counters."""
    from starlette.testclient import TestClient

    from server.app import create_app

    harness.practitioner("ann@clinic.example")
    bad = {"email": "ann@clinic.example", "password": "wrong"}
    for _ in range(3):
        harness.client.post("/api/auth/login", json=bad)
    with TestClient(create_app(settings, clock=clock)) as other:
        for _ in range(2):
            assert other.post("/api/auth/login", json=bad).status_code == 401
        assert other.post("/api/auth/login", json=bad).status_code == 429
    assert harness.client.post("/api/auth/login", json=bad).status_code == 429


def test_api_token_is_shown_once_and_works_as_bearer(harness: Harness) -> None:
    harness.practitioner("ann@clinic.example")
    response = harness.client.post(
        "/api/auth/tokens", json={"email": "ann@clinic.example", "password": PASSWORD, "label": "EHR sync"}
    )
    assert response.status_code == 201
    token = response.json()["token"]
    harness.client.cookies.clear()
    headers = {"Authorization": f"Bearer {token}"}
    assert harness.client.get("/api/patients", headers=headers).status_code == 200
    assert harness.client.get("/api/patients", headers={"Authorization": "Bearer " + token[:-1]}).status_code == 401
    stored = harness.run(harness.ctx.db.fetchall, "SELECT token_hash FROM api_tokens")
    assert all(token.encode() not in bytes(r["token_hash"]) for r in stored)


def test_cross_site_cookie_requests_are_refused(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    body = {"name": "Pat", "timezone": "Europe/London"}
    cross = {**me["cookie"], "Sec-Fetch-Site": "cross-site"}
    response = harness.client.post("/api/patients", json=body, headers=cross)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    same_site = {**me["cookie"], "Sec-Fetch-Site": "same-site"}
    assert harness.client.post("/api/patients", json=body, headers=same_site).status_code == 403
    foreign_origin = {**me["cookie"], "Origin": "https://evil.example"}
    assert harness.client.post("/api/patients", json=body, headers=foreign_origin).status_code == 403
    # HTML forms too.
    form = harness.client.post("/patients", data=body, headers=cross, follow_redirects=False)
    assert form.status_code == 403
    # Nothing was created by the refused requests.
    assert harness.client.get("/api/patients", headers=me["bearer"]).json()["patients"] == []
    # Same origin passes, by either header.
    ok = {**me["cookie"], "Sec-Fetch-Site": "same-origin"}
    assert harness.client.post("/api/patients", json=body, headers=ok).status_code == 201
    ok = {**me["cookie"], "Origin": "http://testserver"}
    assert harness.client.post("/api/patients", json=body, headers=ok).status_code == 201
    # Safe methods are never refused.
    assert harness.client.get("/api/patients", headers={**me["cookie"], "Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_bearer_requests_are_exempt_and_never_fall_back_to_cookies(harness: Harness) -> None:
    me = harness.practitioner("ann@clinic.example")
    body = {"name": "Pat", "timezone": "Europe/London"}
    headers = {**me["bearer"], "Sec-Fetch-Site": "cross-site"}
    assert harness.client.post("/api/patients", json=body, headers=headers).status_code == 201
    # A bogus bearer token plus a valid cookie is not a way around the check.
    sneaky = {**me["cookie"], "Authorization": "Bearer nonsense", "Sec-Fetch-Site": "cross-site"}
    assert harness.client.post("/api/patients", json=body, headers=sneaky).status_code == 401


def test_html_login_and_logout(harness: Harness) -> None:
    harness.practitioner("ann@clinic.example")
    page = harness.client.get("/patients", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    bad = harness.client.post("/login", data={"email": "ann@clinic.example", "password": "x"})
    assert bad.status_code == 401 and "Wrong email or password" in bad.text
    ok = harness.client.post(
        "/login", data={"email": "ann@clinic.example", "password": PASSWORD, "next": "//evil.example"},
        follow_redirects=False,
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/patients"
    assert harness.client.get("/patients").status_code == 200
    harness.client.post("/logout")
    assert harness.client.get("/patients", follow_redirects=False).status_code == 303


def test_passwords_are_argon2id(harness: Harness) -> None:
    harness.practitioner("ann@clinic.example")
    stored = harness.run(harness.ctx.db.fetchval, "SELECT password_hash FROM practitioners")
    assert stored.startswith("$argon2id$")


def test_cookie_signatures_are_itsdangerous_ones_so_existing_cookies_keep_working() -> None:
    from itsdangerous import Signer

    from server.security import CookieSigner

    ours = CookieSigner("a-secret", "patient-device")
    theirs = Signer("a-secret", salt="patient-device")
    assert ours.sign("token") == theirs.sign("token").decode()
    assert ours.unsign(theirs.sign("token").decode()) == "token"
    assert ours.unsign(Signer("a-secret", salt="practitioner-session").sign("token").decode()) is None
    assert ours.unsign(Signer("other-secret", salt="patient-device").sign("token").decode()) is None
    signed = ours.sign("token")
    for bad in ("", "token", "tokem" + signed[5:], signed + "x", signed[:-1], "token.", ".", "tøken." + signed[6:]):
        assert ours.unsign(bad) is None, bad
    assert ours.unsign(ours.sign("a.b.c")) == "a.b.c"  # the signature is after the last dot
