"""The Content-Security-Policy header on every HTTP response."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_every_page_carries_the_policy():
    from django.conf import settings

    for path in ("/admin/login/", "/api/docs/", "/healthz", "/no-such-page"):
        response = Client().get(path)
        assert response["Content-Security-Policy"] == settings.CONTENT_SECURITY_POLICY, path
    policy = settings.CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy


@pytest.mark.django_db
def test_an_empty_policy_sends_no_header(settings):
    settings.CONTENT_SECURITY_POLICY = ""
    assert "Content-Security-Policy" not in Client().get("/admin/login/")
