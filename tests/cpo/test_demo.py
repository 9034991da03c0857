"""Demo data: loaded twice, still one network."""

from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_demo_data_is_idempotent():
    from cpo.demo import demo_data_load
    from sessions.models import IdToken
    from stations.models import ChargingStation, Connector

    demo_data_load()
    demo_data_load()
    assert ChargingStation.objects.filter(identity__in=["DEMO-16", "DEMO-201"]).count() == 2
    assert Connector.objects.filter(station__identity="DEMO-16").count() == 2
    assert IdToken.objects.filter(uid__startswith="DEMO-TAG").count() == 3
    station = ChargingStation.objects.get(identity="DEMO-16")
    assert station.check_password("DEMO-16-secret-pass")
    assert station.location is not None
    assert station.location.time_zone == "Europe/Amsterdam"
