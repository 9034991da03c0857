"""/api/v1/ as a whole: per-user API tokens, what a token may do per role, throttling of failed
token use and of each user, the one error shape, and the schema covering every route."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.cache import caches
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from cpo import api_tokens
from cpo.lib.throttles import FailedTokenThrottle, UserRateThrottle
from cpo.models import ApiToken
from tests.apiv1 import bearer, errors, staff
from tests.cpo.test_roles import allowed, probe_url, url_key, url_rows, world  # noqa: F401

pytestmark = pytest.mark.django_db

ROLES = ("Operators", "Finance", "Support")


def v1_routes() -> list[tuple[str, str, set[str]]]:
    """(name, route, DRF methods) of every named /api/v1/ URL."""
    found = []

    def walk(patterns: list[Any], prefix: str, namespace: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route, pattern.namespace or namespace)
            elif isinstance(pattern, URLPattern) and route.startswith("api/v1/"):
                cb = pattern.callback
                cls = getattr(cb, "cls", None) or getattr(cb, "view_class", None)
                methods = {m.upper() for m in ("get", "post", "patch") if hasattr(cls, m)}
                found.append((f"{namespace}:{pattern.name}", route, methods))

    walk(get_resolver().url_patterns, "", "")
    return found


def sample_url(route: str) -> str:
    """A URL of a route with made-up arguments."""
    return "/" + re.sub(
        r"<(?:(\w+):)?(\w+)>", lambda m: "X-1" if m.group(1) == "str" else "1", route
    )


# --- tokens -------------------------------------------------------------------------------------


def test_a_user_makes_a_token_that_is_shown_once_and_stored_hashed(roles: None) -> None:  # noqa: ARG001
    user = staff("finn", "Finance")
    client = APIClient()
    client.force_authenticate(user)
    made = client.post("/api/v1/api-tokens/", {"name": "exports"}, format="json")
    assert made.status_code == 201, made.json()
    secret = made.json()["secret"]
    assert secret.startswith("cpo_")
    assert len(secret) > 40
    row = ApiToken.objects.get(pk=made.json()["id"])
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiToken.objects.values().get(pk=row.pk))
    # 90 days unless asked otherwise.
    assert abs(row.expires_at - (timezone.now() + dt.timedelta(days=90))) < dt.timedelta(minutes=1)
    detail = client.get(f"/api/v1/api-tokens/{row.pk}/").json()
    assert "secret" not in detail
    assert (detail["prefix"], detail["is_active"]) == (row.prefix, True)

    other = staff("olga", "Operators")
    api_tokens.api_token_create(user=other, name="hers")
    listed = client.get("/api/v1/api-tokens/").json()["results"]
    assert [t["name"] for t in listed] == ["exports"]
    theirs = ApiToken.objects.get(user=other)
    assert client.get(f"/api/v1/api-tokens/{theirs.pk}/").status_code == 404
    assert client.post(f"/api/v1/api-tokens/{theirs.pk}/revoke/").status_code == 404
    assert ApiToken.objects.get(pk=theirs.pk).revoked_at is None


def test_token_input_is_checked(roles: None) -> None:  # noqa: ARG001
    client = bearer(staff("sam", "Support"))
    past = (timezone.now() - dt.timedelta(days=1)).isoformat()
    far = (timezone.now() + dt.timedelta(days=400)).isoformat()
    assert errors(client.post("/api/v1/api-tokens/", {}, format="json")) == [("name", "required")]
    assert errors(
        client.post("/api/v1/api-tokens/", {"name": "x", "expires_at": past}, format="json")
    ) == [("expires_at", "past")]
    assert errors(
        client.post("/api/v1/api-tokens/", {"name": "x", "expires_at": far}, format="json")
    ) == [("expires_at", "too_long")]


def test_a_token_acts_with_exactly_its_users_permissions(roles: None) -> None:  # noqa: ARG001
    support = bearer(staff("sam", "Support"))
    operator = bearer(staff("olga", "Operators"))
    site = {"name": "Depot", "country": "NLD"}
    assert support.get("/api/v1/locations/").status_code == 200
    refused = support.post("/api/v1/locations/", site, format="json")
    assert refused.status_code == 403
    assert errors(refused) == [(None, "permission_denied")]
    assert operator.post("/api/v1/locations/", site, format="json").status_code == 201
    # No role: a token of a user without groups reads nothing.
    nobody = bearer(staff("nobody"))
    assert nobody.get("/api/v1/locations/").status_code == 403
    # Its own tokens it may still manage.
    assert nobody.get("/api/v1/api-tokens/").status_code == 200


def test_last_use_is_recorded(roles: None) -> None:  # noqa: ARG001
    user = staff("sam", "Support")
    token, raw = api_tokens.api_token_create(user=user, name="probe")
    assert token.last_used_at is None
    client = bearer(None, raw=raw)
    assert client.get("/api/v1/stations/", REMOTE_ADDR="192.0.2.7").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert token.last_used_from == "192.0.2.7"


@pytest.mark.parametrize("state", ["anonymous", "revoked", "expired", "garbage", "inactive user"])
def test_every_v1_route_refuses_without_a_valid_token(roles: None, state: str) -> None:  # noqa: ARG001
    user = staff("olga", "Operators")
    token, raw = api_tokens.api_token_create(user=user, name="probe")
    if state == "revoked":
        client = bearer(None, raw=raw)
        assert client.get("/api/v1/stations/").status_code == 200
        api_tokens.api_token_revoke(token=token)
    elif state == "expired":
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    elif state == "inactive user":
        user.is_active = False
        user.save()
    client = {
        "anonymous": APIClient(),
        "garbage": bearer(None, raw="cpo_deadbeef_not-a-token"),
    }.get(state) or bearer(None, raw=raw)
    routes = v1_routes()
    assert len(routes) > 30
    for _name, route, methods in routes:
        for method in methods:
            response = getattr(client, method.lower())(sample_url(route), {}, format="json")
            assert response.status_code == 401, (state, method, route, response.status_code)
            assert response["WWW-Authenticate"].startswith("Bearer")
            [(field, code)] = errors(response)
            assert field is None
            expected = "not_authenticated" if state == "anonymous" else "authentication_failed"
            assert code == expected
            # Each request on its own: the failure throttle is tested below.
            caches["throttle"].clear()


@pytest.mark.parametrize("role", ROLES)
def test_tokens_of_each_role_get_what_the_roles_table_says(
    world: dict[str, Any],  # noqa: F811
    role: str,
) -> None:
    """The README's Roles rows of /api/v1/, requested with the role's own API token."""
    client = bearer(world["users"][role])
    problems = []
    for name, methods in sorted(url_rows().items()):
        if not name.startswith("v1:"):
            continue
        url = probe_url(name, world)
        for method in methods:
            response = getattr(client, method.lower())(url, {}, format="json")
            refused = response.status_code in (401, 403)
            if refused == allowed(url_key(name, method), role):
                problems.append(f"{role} {method} {url}: {response.status_code}")
    assert problems == []


def test_drf_keys_of_the_first_api_still_work(roles: None) -> None:  # noqa: ARG001
    from rest_framework.authtoken.models import Token

    key = Token.objects.create(user=staff("sam", "Support")).key
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/stations/").status_code == 200
    assert client.get("/api/tokens/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")
    assert errors(client.get("/api/v1/stations/")) == [(None, "authentication_failed")]


# --- throttling ---------------------------------------------------------------------------------


def _limit() -> int:
    return FailedTokenThrottle().num_requests


def test_failed_tokens_are_throttled_per_source_address(roles: None) -> None:  # noqa: ARG001
    user = staff("sam", "Support")
    _token, good = api_tokens.api_token_create(user=user, name="good")
    here: dict[str, Any] = {"REMOTE_ADDR": "198.51.100.1"}
    for attempt in range(_limit()):
        guess = bearer(None, raw=f"cpo_{attempt:08x}_wrong")
        assert guess.get("/api/v1/stations/", **here).status_code == 401
    throttled = bearer(None, raw="cpo_ffffffff_wrong").get("/api/v1/stations/", **here)
    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert errors(throttled) == [(None, "throttled")]
    # While the address is throttled even a good token is not looked at; DRF's keys neither.
    assert bearer(None, raw=good).get("/api/v1/stations/", **here).status_code == 429
    legacy = APIClient()
    legacy.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert legacy.get("/api/tokens/", **here).status_code == 429
    # Another address is not affected.
    elsewhere: dict[str, Any] = {"REMOTE_ADDR": "198.51.100.2"}
    assert bearer(None, raw=good).get("/api/v1/stations/", **elsewhere).status_code == 200


def test_a_forged_forwarded_for_does_not_escape_the_address_throttle(roles: None) -> None:  # noqa: ARG001
    here: dict[str, Any] = {"REMOTE_ADDR": "198.51.100.5"}
    for n in range(_limit()):
        forged = {**here, "HTTP_X_FORWARDED_FOR": f"10.0.0.{n}"}
        assert (
            bearer(None, raw=f"cpo_{n:08x}_x").get("/api/v1/stations/", **forged).status_code == 401
        )
    forged = {**here, "HTTP_X_FORWARDED_FOR": "10.0.0.250"}
    assert bearer(None, raw="cpo_00000000_x").get("/api/v1/stations/", **forged).status_code == 429


def test_failed_tokens_are_throttled_per_token_prefix(roles: None) -> None:  # noqa: ARG001
    """Guessing one token's secret from many addresses: its prefix is throttled."""
    user = staff("sam", "Support")
    token, good = api_tokens.api_token_create(user=user, name="good")
    for n in range(_limit()):
        wrong = bearer(None, raw=f"cpo_{token.prefix}_wrong{n}")
        assert wrong.get("/api/v1/stations/", REMOTE_ADDR=f"203.0.113.{n}").status_code == 401
    fresh: dict[str, Any] = {"REMOTE_ADDR": "203.0.113.200"}
    assert bearer(None, raw=good).get("/api/v1/stations/", **fresh).status_code == 429
    # Other tokens from that fresh address pass.
    _other, raw = api_tokens.api_token_create(user=user, name="other")
    assert bearer(None, raw=raw).get("/api/v1/stations/", **fresh).status_code == 200


def test_legacy_drf_keys_are_throttled_too(roles: None) -> None:  # noqa: ARG001
    client = APIClient()
    here: dict[str, Any] = {"REMOTE_ADDR": "198.51.100.9"}
    for n in range(_limit()):
        client.credentials(HTTP_AUTHORIZATION=f"Token {n:040d}")
        assert client.get("/api/tokens/", **here).status_code == 401
    assert client.get("/api/tokens/", **here).status_code == 429


def test_each_user_has_a_request_rate(roles: None, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ARG001
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/min"})
    first = bearer(staff("sam", "Support"))
    second = bearer(staff("sue", "Support"))
    assert [first.get("/api/v1/stations/").status_code for _ in range(3)] == [200, 200, 200]
    limited = first.get("/api/v1/stations/")
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0
    assert errors(limited) == [(None, "throttled")]
    assert second.get("/api/v1/stations/").status_code == 200


# --- errors and schema --------------------------------------------------------------------------


def test_not_found_and_method_errors_have_the_one_shape(roles: None) -> None:  # noqa: ARG001
    client = bearer(staff("olga", "Operators"))
    assert errors(client.get("/api/v1/stations/NO-SUCH/")) == [(None, "not_found")]
    assert errors(client.delete("/api/v1/stations/")) == [(None, "method_not_allowed")]
    bad = client.post("/api/v1/locations/", "{not json", content_type="application/json")
    assert errors(bad) == [(None, "parse_error")]


def test_the_schema_documents_every_v1_route_and_the_error_shape(roles: None) -> None:  # noqa: ARG001
    client = bearer(staff("sam", "Support"))
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for name, route, methods in v1_routes():
        documented = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
        assert documented in paths, (name, documented)
        assert {m.lower() for m in methods} <= set(paths[documented]), (name, methods)
        for method in methods:
            operation = paths[documented][method.lower()]
            assert (
                operation.get("description") or operation.get("summary") or operation["responses"]
            ), name
            for status in ("400", "401", "403", "404", "429"):
                ref = operation["responses"][status]["content"]["application/json"]["schema"]
                assert ref == {"$ref": "#/components/schemas/Error"}
    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"
    assert "errors" in schema["components"]["schemas"]["Error"]["properties"]


@pytest.mark.parametrize("page", ["api-docs", "api-redoc"])
def test_the_docs_pages_load_nothing_from_elsewhere(roles: None, page: str) -> None:  # noqa: ARG001
    client = APIClient()
    client.force_login(staff("sam", "Support"))
    html = client.get(reverse(page)).content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources
    for source in sources:
        assert source.startswith("/"), source
        if source.startswith("/static/"):
            assert finders.find(source.removeprefix("/static/")), source


def test_the_schema_generates_and_validates_without_a_warning(tmp_path: Any) -> None:
    """drf-spectacular's own check: every view's serializers, parameters and enums resolved."""
    from django.core.management import call_command

    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "/api/v1/stations/{identity}/password/" in target.read_text()
