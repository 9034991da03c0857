"""Demo data: only when asked, created once, never a password reset or printed again."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from cpo.demo import DEMO_LOGINS, DEMO_STATIONS, demo_data_load, demo_data_wanted

PASSWORDS = [password for _, _, password in DEMO_LOGINS] + [s["password"] for s in DEMO_STATIONS]

pytestmark = pytest.mark.django_db


def _demo_data(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("demo_data", *args, stdout=out)
    return out.getvalue()


def test_demo_data_is_idempotent(roles):
    from sessions.models import IdToken
    from stations.models import ChargingStation, Connector

    first = demo_data_load()
    second = demo_data_load()
    assert [login[1] for login in first.logins] == ["admin", "operator", "finance", "support"]
    assert (second.logins, second.stations) == ([], [])
    assert ChargingStation.objects.filter(identity__in=["DEMO-16", "DEMO-201"]).count() == 2
    assert Connector.objects.filter(station__identity="DEMO-16").count() == 2
    assert IdToken.objects.filter(uid__startswith="DEMO-TAG").count() == 3
    station = ChargingStation.objects.get(identity="DEMO-16")
    assert station.check_password("DEMO-16-secret-pass")
    assert station.location is not None
    assert station.location.time_zone == "Europe/Amsterdam"


def test_loading_the_demo_again_never_resets_a_password_or_a_role(roles):
    from django.contrib.auth.models import Group

    from cpo.models import User
    from stations.models import ChargingStation

    demo_data_load()
    admin = User.objects.get(username="admin")
    admin.set_password("the-operators-own-2026")
    admin.save()
    operator = User.objects.get(username="operator")
    operator.groups.set([Group.objects.get(name="Support")])
    station = ChargingStation.objects.get(identity="DEMO-16")
    station.set_password("a-station-password-of-its-own")
    station.registration_status = ChargingStation.RegistrationStatus.REJECTED
    station.save()

    output = _demo_data()  # make demo, again

    admin.refresh_from_db()
    station.refresh_from_db()
    assert admin.check_password("the-operators-own-2026")
    assert [g.name for g in operator.groups.all()] == ["Support"]
    assert station.check_password("a-station-password-of-its-own")
    assert station.registration_status == ChargingStation.RegistrationStatus.REJECTED
    assert not any(password in output for password in PASSWORDS)
    assert "left as they are" in output


def test_the_demo_command_prints_the_passwords_only_when_it_creates_them(roles):
    first = _demo_data()
    assert all(password in first for password in PASSWORDS)
    assert "change them" in first
    again = _demo_data()
    assert not any(password in again for password in PASSWORDS)


def test_the_demo_is_wanted_on_a_first_embedded_run_or_when_asked(roles, settings, monkeypatch):
    from cpo.models import User

    monkeypatch.delenv("DEMO", raising=False)
    settings.DATABASE_URL = ""
    assert demo_data_wanted() == (True, "first run on the embedded defaults")
    monkeypatch.setenv("DEMO", "0")
    assert demo_data_wanted()[0] is False

    monkeypatch.delenv("DEMO")
    User.objects.create_user(username="someone")
    assert demo_data_wanted() == (False, "not the first run")

    settings.DATABASE_URL = "postgres://cpo@db/cpo"
    User.objects.all().delete()
    assert demo_data_wanted() == (False, "DATABASE_URL is set")
    monkeypatch.setenv("DEMO", "1")
    assert demo_data_wanted() == (True, "DEMO=1")


def test_make_run_on_a_production_database_loads_no_demo(roles, settings, monkeypatch):
    from cpo.models import User

    monkeypatch.delenv("DEMO", raising=False)
    settings.DATABASE_URL = "postgres://cpo@db/cpo"
    output = _demo_data("--if-wanted")
    assert "Demo data not loaded (DATABASE_URL is set)" in output
    assert not User.objects.exists()


def test_the_run_banner_shows_no_password_and_how_to_make_a_superuser(roles):
    from cpo.models import User
    from cpo.run import banner

    empty = banner(8000, "redis://r", "postgresql cpo")
    assert "No superuser yet" in empty
    assert "manage.py createsuperuser" in empty
    assert "Demo logins" not in empty

    demo_data_load()
    shown = banner(8000, "redis://r", "postgresql cpo")
    assert not any(password in shown for password in PASSWORDS)
    assert "No superuser yet" not in shown
    assert "Demo logins    : admin, finance, operator, support" in shown
    assert "Demo stations  : DEMO-16, DEMO-201" in shown
    assert "README.md, Demo data" in shown
    assert "manage.py changepassword" in shown
    User.objects.filter(is_superuser=True).update(is_active=False)
    assert "No superuser yet" in banner(8000, "redis://r", "postgresql cpo")
