"""The header's language switcher (panel:language): the user's own language, remembered."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from cpo.models import User
from tests.cpo.panel.conftest import make_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(roles) -> User:  # noqa: ARG001
    return make_staff("lang-support", "Support")


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_language_is_remembered_for_the_user_and_in_the_cookie(user: User) -> None:
    client = client_for(user)
    response = client.post(
        reverse("panel:language"), {"language": "de", "next": "/admin/panel/reports/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/admin/panel/reports/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "de"
    user.refresh_from_db()
    assert user.language == "de"
    page = client.get(reverse("panel:reports"), HTTP_ACCEPT_LANGUAGE="nl")
    assert '<html lang="de"' in page.content.decode()
    assert "Berichte" in page.content.decode()


def test_an_unknown_language_is_refused_and_changes_nothing(user: User) -> None:
    user.language = "nl"
    user.save()
    response = client_for(user).post(reverse("panel:language"), {"language": "<b>fr"})
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain")
    # In the user's language, Dutch.
    assert (
        response.content.decode() == "<b>fr is geen van de talen van het beheerpaneel (en, nl, de)."
    )
    user.refresh_from_db()
    assert user.language == "nl"


def test_no_language_means_the_browser_s_again(user: User) -> None:
    user.language = "de"
    user.save()
    client = client_for(user)
    response = client.post(
        reverse("panel:language"), {"language": "", "next": "https://evil.example/"}
    )
    # Only pages of the back office itself are gone back to.
    assert response["Location"] == reverse("admin:index")
    user.refresh_from_db()
    assert user.language == ""
    page = client.get(reverse("panel:reports"), HTTP_ACCEPT_LANGUAGE="nl")
    assert '<html lang="nl"' in page.content.decode()


def test_numbers_on_pages_follow_the_language() -> None:
    from django.utils import translation

    from cpo.lib.formatting import display_money, display_number

    with translation.override("de"):
        assert display_number("1234.500") == "1234,500"
        assert display_money([{"amount": "12.35", "currency": "EUR"}]) == "12,35 EUR"
    with translation.override("en"):
        assert display_number("1234.500") == "1234.500"
        assert display_money([]) == "0.00"
