"""Deployment settings read from the environment: TLS, HSTS, secure cookies, `check --deploy`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.conftest import ROOT

PRODUCTION = {
    "DATABASE_URL": "postgres://cpo@db.invalid:5432/cpo",
    "REDIS_URL": "redis://redis.invalid:6379/0",
    "SECRET_KEY": "a-production-secret-of-fifty-characters-or-more-0123456789-xyz",
    "ALLOWED_HOSTS": "cpo.example.com",
    "DEBUG": "false",
    "HTTPS": "true",
}


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """manage.py with the production settings module and only the given deployment variables."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "SECURE_", "DB_", "CSP", "HTTPS"))
        and k not in ("DJANGO_SETTINGS_MODULE", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG")
    }
    clean.update(DJANGO_SETTINGS_MODULE="cpo.settings", CPO_DATA_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_in_a_production_configuration(tmp_path):
    done = _manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_without_tls_check_deploy_names_what_https_turns_on(tmp_path):
    plain = {k: v for k, v in PRODUCTION.items() if k != "HTTPS"}
    done = _manage(tmp_path, "check", "--deploy", **plain)
    warned = {
        line.split("(")[1].split(")")[0] for line in done.stderr.splitlines() if "?: (" in line
    }
    assert warned == {"security.W004", "security.W008", "security.W012", "security.W016"}


def test_https_sets_every_secure_value_and_each_can_be_set_alone(tmp_path):
    script = (
        "import json; from django.conf import settings as s; print(json.dumps({n: getattr(s, n)"
        " for n in ['SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE',"
        " 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD',"
        " 'SECURE_PROXY_SSL_HEADER']}))"
    )

    def values(**env: str) -> dict:
        done = _manage(tmp_path, "shell", "-c", script, **env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    assert values() == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    assert values(
        HTTPS="true", SECURE_HSTS_PRELOAD="false", SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"
    ) == {
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


@pytest.fixture
def tls(settings):
    """The values HTTPS=true gives (test_https_sets_every_secure_value_... pins the mapping)."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    return settings


@pytest.mark.django_db
def test_over_tls_browsers_are_redirected_but_probes_and_station_uploads_are_not(tls):
    client = Client()
    response = client.get("/admin/login/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/admin/login/"
    assert client.get("/healthz").status_code in (200, 503)  # answered, not redirected
    # A station's upload over plain HTTP reaches the view (an unknown token: 404, not 301).
    assert client.put("/uploads/diagnostics/no-such-token/diag.zip", b"x").status_code == 404

    secure = client.get("/admin/login/", headers={"X-Forwarded-Proto": "https"})
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert secure.cookies["csrftoken"]["secure"] is True


@pytest.mark.django_db
def test_over_tls_the_session_cookie_is_secure(tls, roles):
    from cpo.models import User

    User.objects.create_user(username="ops", password="ops-pass-2026", is_staff=True)
    client = Client(headers={"X-Forwarded-Proto": "https"})
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "ops", "password": "ops-pass-2026"}
    )
    assert response.status_code == 302
    assert response.cookies["sessionid"]["secure"] is True
    assert response.cookies["sessionid"]["httponly"] is True
