"""Finding 12 of issue 20 (panel part): failed panel logins are limited per username and per
source address, with a lockout that the login page explains and a superuser can lift."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cpo.models import LoginThrottle, User

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
LOCKED = "Too many failed logins for this username or from this address"


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_LOCKOUT_SECONDS = 600
    settings.LOGIN_TRUSTED_PROXIES = ["10.0.0.1"]


@pytest.fixture
def olivia() -> User:
    return User.objects.create_user(username="olivia", password=PASSWORD, is_staff=True)


def login(client: Client, username: str, password: str, **headers: Any) -> Any:
    return client.post(
        reverse("admin:login") + "?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
        **headers,
    )


def logged_in(response: Any) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def test_three_wrong_passwords_lock_the_username_even_for_the_right_one(
    olivia: User, caplog: Any
) -> None:
    first, second = Client(REMOTE_ADDR="192.0.2.1"), Client(REMOTE_ADDR="192.0.2.2")
    caplog.set_level(logging.WARNING, logger="cpo.login_limits")
    assert "Please enter the correct username" in login(first, "olivia", "nope-1").content.decode()
    login(first, "olivia", "nope-2")
    third = login(second, "OLIVIA", "nope-3")  # the username in any case, from elsewhere
    assert LOCKED in third.content.decode()

    refused = login(Client(REMOTE_ADDR="192.0.2.3"), "olivia", PASSWORD)
    assert not logged_in(refused)
    assert LOCKED in refused.content.decode()
    assert "even with the right password" in refused.content.decode()
    assert "panel logins of username 'olivia' locked until" in caplog.text
    row = LoginThrottle.objects.get(scope="username", key="olivia")
    assert (row.failures, row.lockouts) == (4, 1)

    # The cooldown ends: the right password works, and clears the username's count.
    LoginThrottle.objects.update(locked_until=timezone.now() - dt.timedelta(seconds=1))
    assert logged_in(login(Client(REMOTE_ADDR="192.0.2.3"), "olivia", PASSWORD))
    assert not LoginThrottle.objects.filter(scope="username").exists()


def test_a_failure_after_a_lockout_locks_again_for_twice_as_long(olivia: User) -> None:
    client = Client(REMOTE_ADDR="192.0.2.1")
    for n in range(3):
        login(client, "olivia", f"nope-{n}")
    LoginThrottle.objects.update(locked_until=timezone.now() - dt.timedelta(seconds=1))
    before = timezone.now()
    assert LOCKED in login(client, "olivia", "nope-again").content.decode()
    row = LoginThrottle.objects.get(scope="username", key="olivia")
    assert row.lockouts == 2
    assert row.locked_until is not None
    assert row.locked_until - before >= dt.timedelta(seconds=1200)


def test_one_address_trying_many_usernames_is_locked(olivia: User) -> None:
    attacker = Client(REMOTE_ADDR="198.51.100.7")
    for name in ("root", "admin", "operator"):
        login(attacker, name, "guess")
    refused = login(attacker, "olivia", PASSWORD)
    assert LOCKED in refused.content.decode()
    # Olivia herself, from her own address, is not locked out by it.
    assert logged_in(login(Client(REMOTE_ADDR="192.0.2.9"), "olivia", PASSWORD))


def test_behind_a_trusted_proxy_the_forwarded_address_counts(olivia: User) -> None:
    proxy = Client(REMOTE_ADDR="10.0.0.1")
    for name in ("root", "admin", "operator"):
        # A client that writes its own X-Forwarded-For gets only the proxy's entry counted.
        login(proxy, name, "guess", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7")
    assert LoginThrottle.objects.filter(scope="address", key="198.51.100.7").get().failures == 3
    refused = login(proxy, "olivia", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert LOCKED in refused.content.decode()
    # Another client behind the same proxy is not locked out.
    assert logged_in(login(proxy, "olivia", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.5"))
    # An untrusted peer's X-Forwarded-For is ignored: its own address counts.
    login(Client(REMOTE_ADDR="203.0.113.1"), "x", "y", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert LoginThrottle.objects.filter(scope="address", key="203.0.113.1").exists()
    assert not LoginThrottle.objects.filter(scope="address", key="10.9.9.9").exists()


def test_a_superuser_lifts_a_lockout_in_the_panel(olivia: User, caplog: Any) -> None:
    client = Client(REMOTE_ADDR="192.0.2.1")
    for n in range(3):
        login(client, "olivia", f"nope-{n}")
    assert LOCKED in login(client, "olivia", PASSWORD).content.decode()

    root = User.objects.create_superuser(username="root", password=PASSWORD)
    admin_client = Client(REMOTE_ADDR="192.0.2.50")
    admin_client.force_login(root)
    changelist = reverse("admin:cpo_loginthrottle_changelist")
    page = admin_client.get(changelist)
    assert page.status_code == 200
    assert "olivia" in page.content.decode()
    caplog.set_level(logging.WARNING, logger="cpo.login_limits")
    lifted = admin_client.post(
        changelist,
        {
            "action": "lift_lockouts",
            "_selected_action": [
                str(pk) for pk in LoginThrottle.objects.values_list("pk", flat=True)
            ],
        },
        follow=True,
    )
    assert "Lifted 2 login limit(s)." in lifted.content.decode()
    assert "panel login limit of Username olivia lifted by root" in caplog.text
    assert logged_in(login(client, "olivia", PASSWORD))


def test_staff_roles_cannot_see_or_lift_lockouts(roles: None, olivia: User) -> None:
    from django.contrib.auth.models import Group

    olivia.groups.add(Group.objects.get(name="Operators"))
    client = Client()
    client.force_login(olivia)
    assert client.get(reverse("admin:cpo_loginthrottle_changelist")).status_code == 403


def test_login_lift_command(olivia: User) -> None:
    client = Client(REMOTE_ADDR="192.0.2.1")
    for n in range(3):
        login(client, "olivia", f"nope-{n}")
    call_command("login_lift", "--username", "Olivia")
    assert not LoginThrottle.objects.filter(scope="username").exists()
    # The address is still locked until it is lifted too.
    assert LOCKED in login(client, "olivia", PASSWORD).content.decode()
    call_command("login_lift", "--address", "192.0.2.1")
    assert logged_in(login(client, "olivia", PASSWORD))


def test_api_tokens_are_not_counted_as_logins(olivia: User) -> None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=olivia)
    client = Client(REMOTE_ADDR="192.0.2.1")
    for _ in range(5):
        client.get("/api/tokens/", HTTP_AUTHORIZATION="Token wrong-token")
    assert not LoginThrottle.objects.exists()
    assert client.get("/api/tokens/", HTTP_AUTHORIZATION=f"Token {token.key}").status_code in (
        200,
        403,
    )
