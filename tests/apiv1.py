"""Helpers of the /api/v1/ tests: clients with a user's own API token, and the error shape."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from cpo import api_tokens


def staff(username: str, role: str | None = None) -> Any:
    from cpo.models import User

    user = User.objects.create_user(username=username, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def bearer(user: Any | None, *, raw: str | None = None) -> APIClient:
    """A client sending `user`'s new API token (or `raw`); no credentials for None."""
    client = APIClient()
    if user is not None and raw is None:
        _token, raw = api_tokens.api_token_create(user=user, name="tests")
    if raw is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def errors(response: Any) -> list[tuple[str | None, str]]:
    """(field, code) of every error of a response in the API's one error shape."""
    body = response.json()
    assert set(body) == {"errors"}, body
    for item in body["errors"]:
        assert set(item) == {"field", "code", "message"}, item
        assert item["message"], item
    return [(item["field"], item["code"]) for item in body["errors"]]


def walk(client: APIClient, url: str, **params: Any) -> list[dict[str, Any]]:
    """Every row of a cursor-paginated list, page by page."""
    rows: list[dict[str, Any]] = []
    page = client.get(url, params).json()
    rows += page["results"]
    while page["next"]:
        page = client.get(page["next"]).json()
        rows += page["results"]
    return rows
