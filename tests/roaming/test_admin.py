"""The roaming panel: Operators give token A and register with a partner; others cannot."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from cpo.models import User
from roaming.models import IssuedToken, Partner
from tests.roaming.conftest import LoopbackPlatform, auth

pytestmark = pytest.mark.django_db


def staff(role: str) -> Client:
    user = User.objects.create_user(username=f"r-{role}", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def test_operators_give_a_token_a_that_opens_our_versions(roles: None, partner: Partner) -> None:  # noqa: ARG001
    client = staff("Operators")
    url = reverse("admin:roaming_partner_changelist")
    response = client.post(
        url, {"action": "give_registration_token", "_selected_action": [partner.pk]}, follow=True
    )
    text = " ".join(str(m) for m in get_messages(response.wsgi_request))
    found = re.search(
        r"single use\): (\S+) — with our versions URL http://localhost:8000/ocpi/versions", text
    )
    assert found, text
    token = found.group(1)
    assert Client().get("/ocpi/versions", **auth(token)).status_code == 200
    assert IssuedToken.objects.filter(partner=partner, kind="REGISTRATION").count() == 1
    # The change page lists the token's row, never its value.
    html = client.get(reverse("admin:roaming_partner_change", args=[partner.pk])).content.decode()
    assert "Registration (token A)" in html
    assert token not in html


def test_a_partner_without_parties_gets_no_token(roles: None, partner: Partner) -> None:  # noqa: ARG001
    partner.allowed_parties.clear()
    url = reverse("admin:roaming_partner_changelist")
    response = staff("Operators").post(
        url, {"action": "give_registration_token", "_selected_action": [partner.pk]}, follow=True
    )
    assert "none of our parties" in " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert not IssuedToken.objects.filter(partner=partner).exists()


@pytest.mark.parametrize("role", ["Support", "Finance"])
def test_other_roles_can_neither_give_tokens_nor_register(
    roles: None,  # noqa: ARG001
    partner: Partner,
    platform: LoopbackPlatform,
    role: str,
) -> None:
    client = staff(role)
    client.post(
        reverse("admin:roaming_partner_changelist"),
        {"action": "give_registration_token", "_selected_action": [partner.pk]},
    )
    assert not IssuedToken.objects.filter(partner=partner).exists()
    register = reverse("admin:roaming_partner_register", args=[partner.pk])
    form = {"versions_url": platform.versions_url, "token": platform.token}
    assert client.post(register, form).status_code == 403
    assert platform.requests == []


def test_operators_register_with_a_partner_from_its_versions_url_and_token(
    roles: None,  # noqa: ARG001
    partner: Partner,
    platform: LoopbackPlatform,
) -> None:
    client = staff("Operators")
    register = reverse("admin:roaming_partner_register", args=[partner.pk])
    assert "Their versions URL" in client.get(register).content.decode()
    wrong: dict[str, Any] = {"versions_url": platform.versions_url, "token": "not-theirs"}
    refused = client.post(register, wrong)
    assert refused.status_code == 200
    assert "HTTP 401" in refused.content.decode()
    response = client.post(
        register, {"versions_url": platform.versions_url, "token": platform.token}
    )
    assert response.status_code == 302
    partner.refresh_from_db()
    assert partner.status == Partner.Status.REGISTERED
    assert any(r["method"] == "POST" for r in platform.requests)
