"""Station credentials: salted hashes."""

from __future__ import annotations


def test_station_password_is_salted():
    from stations.models import station_password_hash, station_password_matches

    first, second = (
        station_password_hash("same-password-16"),
        station_password_hash("same-password-16"),
    )
    assert first != second
    assert station_password_matches("same-password-16", first)
    assert not station_password_matches("other-password-16", first)
