"""The project app: its system checks."""

from __future__ import annotations

from django.test import override_settings

from cpo.apps import check_time_zone


def test_time_zone_check_refuses_anything_but_utc():
    assert check_time_zone(None) == []
    with override_settings(TIME_ZONE="Europe/Amsterdam"):
        errors = check_time_zone(None)
    assert [e.id for e in errors] == ["cpo.E001"]
