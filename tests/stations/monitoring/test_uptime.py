"""Uptime figures against a hand-computed example with excluded time, and the four-eyes rule.

The example (all times UTC, April 2025 has 30 days = 43,200 minutes):

Site "Depot". Station UP-A (EVSE 1, 150 kW: rapid), station UP-B (EVSE 1, 22 kW).

UP-A, EVSE 1 (connected from 31 March to 20 April 00:00 and again from 20 April 06:00 to
1 January 2026):
- 1 Apr 00:00 Available (its first report: measured from here)
- 10 Apr 08:00 Faulted, 10 Apr 20:00 Available        -> 12 h  =   720 min down (connected)
- 20 Apr 00:00 - 06:00 no connection                  ->  6 h  =   360 min offline
- 25 Apr 10:00 Unavailable, 25 Apr 14:00 Available    ->  4 h  =   240 min down (connected)
- approved exclusion 25 Apr 09:00 - 15:00 (maintenance) -> 6 h =   360 min excluded,
  of which the 240 min of Unavailable are outage
- a PENDING exclusion over the fault of 10 Apr and a REJECTED one over the offline time:
  neither counts.
  Outage O = 720 + 360 + 240 = 1,320 min; excluded outage Ox = 240; excluded X = 360.

UP-B, EVSE 1 (connected the whole time):
- 1 Apr 00:00 Available; the station itself (connector 0) Faulted 5 Apr 00:00 - 01:00
                                                       ->  1 h  =    60 min down
"""

from __future__ import annotations

from datetime import UTC, date
from typing import Any

import pytest

from stations.monitoring import services, uptime
from stations.monitoring.models import UptimeExclusion
from tests.stations.monitoring.uptime_example import at, build_example, make_operators

pytestmark = pytest.mark.django_db


@pytest.fixture
def operators() -> tuple[Any, Any]:
    return make_operators()


@pytest.fixture
def example(operators) -> dict[str, Any]:
    return build_example(*operators)


def rows_by_station(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["station"]: row for row in data["rows"]}


def test_contract_sla_matches_the_hand_computed_example(example) -> None:
    data = uptime.sla_report(start=at(4, 1), end=at(5, 1), target=97.0)
    a, b = rows_by_station(data)["UP-A"], rows_by_station(data)["UP-B"]
    assert a["measured_min"] == 43_200
    assert a["outage_min"] == 1_320  # 720 + 360 + 240
    assert a["excluded_min"] == 360  # the approved maintenance window only
    assert a["excluded_outage_min"] == 240
    assert a["counted_outage_min"] == 1_080  # 1,320 - 240
    # (43,200 - 360 - 1,080) / (43,200 - 360) = 41,760 / 42,840 = 97.4789...%
    assert a["uptime_pct"] == 97.479
    assert a["meets_target"] == "yes"
    # UP-B: the station-level fault takes its EVSE down: (43,200 - 60) / 43,200 = 99.8611%
    assert b["outage_min"] == 60
    assert b["uptime_pct"] == 99.861
    # Site and network: (86,400 - 360 - 1,140) / (86,400 - 360) = 84,900 / 86,040 = 98.6750%
    assert data["network"]["uptime_pct"] == 98.675
    assert data["sites"] == [{"site": "Depot", **data["network"]}]
    stricter = uptime.sla_report(start=at(4, 1), end=at(5, 1), target=99.0)
    assert rows_by_station(stricter)["UP-A"]["meets_target"] == "no"
    assert stricter["evses_below_target"] == 1


def test_nevi_month_and_rolling_twelve_months(example) -> None:
    data = uptime.nevi_report(month=date(2025, 4, 1), tz=UTC)
    a, b = rows_by_station(data)["UP-A"], rows_by_station(data)["UP-B"]
    assert data["window_start"] == "2024-05-01T00:00:00+00:00"
    assert data["window_end"] == "2025-05-01T00:00:00+00:00"
    assert a["month_min"] == 43_200
    assert a["month_outage_min"] == 1_320  # T_outage
    assert a["month_excluded_min"] == 240  # T_excluded: outage inside approved excluded time
    # ((43,200 - (1,320 - 240)) / 43,200) x 100 = 42,120 / 43,200 = 97.5%
    assert a["month_uptime_pct"] == 97.5
    # In service since 1 April only: the twelve months hold the same minutes.
    assert a["rolling_min"] == 43_200
    assert a["rolling_uptime_pct"] == 97.5
    assert a["meets_97"] == "yes"
    assert b["month_uptime_pct"] == 99.861  # (43,200 - 60) / 43,200
    # The next month: May 2025 has 31 days = 44,640 min, all up for UP-A;
    # rolling: (43,200 + 44,640 - 1,080) / 87,840 = 86,760 / 87,840 = 98.7705%
    may = rows_by_station(uptime.nevi_report(month=date(2025, 5, 1), tz=UTC))["UP-A"]
    assert may["month_min"] == 44_640
    assert may["month_uptime_pct"] == 100.0
    assert may["rolling_min"] == 87_840
    assert may["rolling_uptime_pct"] == 98.77


def test_uk_reliability_of_rapid_charge_points(example) -> None:
    data = uptime.uk_report(year=2025, tz=UTC)
    # Only UP-A is rapid (150 kW >= 50 kW); UP-B (22 kW) is not in the network figure.
    assert [row["station"] for row in data["rows"]] == ["UP-A"]
    a = data["rows"][0]
    # Measured 1 Apr 2025 - 1 Jan 2026: 275 days = 396,000 min.
    assert a["measured_min"] == 396_000
    # Not reliable (OUTOFORDER / INOPERATIVE while connected): 720 + 240 = 960 min; the
    # regulation has no excluded time, so the maintenance window counts against it.
    assert a["not_reliable_min"] == 960
    # Offline is OCPI UNKNOWN: "ineligible for measurement", reliable (reg. 7(3)(b)).
    assert a["unknown_min"] == 360
    # (396,000 - 960) / 396,000 = 99.7576%
    assert a["reliability_pct"] == 99.758
    assert data["network_reliability_pct"] == 99.758
    assert data["complies"] is True


def test_unapproved_exclusion_does_not_count_until_approved(example, operators) -> None:
    alice, bob = operators
    before = rows_by_station(uptime.sla_report(start=at(4, 1), end=at(5, 1)))["UP-A"]
    pending = UptimeExclusion.objects.get(state=UptimeExclusion.State.PENDING)
    services.uptime_exclusion_approve(exclusion_id=pending.pk, user=bob)
    after = rows_by_station(uptime.sla_report(start=at(4, 1), end=at(5, 1)))["UP-A"]
    assert before["excluded_outage_min"] == 240
    # Now the 720 min fault is excused as well: X = 360 + 720, Ox = 240 + 720.
    assert after["excluded_min"] == 1_080
    assert after["excluded_outage_min"] == 960
    # (43,200 - 1,080 - 360) / (43,200 - 1,080) = 41,760 / 42,120 = 99.1453%
    assert after["uptime_pct"] == 99.145


def test_self_approval_is_refused_and_changes_nothing(operators) -> None:
    alice, bob = operators
    exclusion = services.uptime_exclusion_create(
        user=alice, starts_at=at(4, 1), ends_at=at(4, 2), reason="vandalism", note="Cable cut"
    )
    with pytest.raises(services.ExclusionError, match="four eyes"):
        services.uptime_exclusion_approve(exclusion_id=exclusion.pk, user=alice)
    with pytest.raises(services.ExclusionError, match="four eyes"):
        services.uptime_exclusion_reject(exclusion_id=exclusion.pk, user=alice)
    exclusion.refresh_from_db()
    assert exclusion.state == UptimeExclusion.State.PENDING
    assert exclusion.decided_by is None
    services.uptime_exclusion_approve(exclusion_id=exclusion.pk, user=bob)
    with pytest.raises(services.ExclusionError, match="already approved"):
        services.uptime_exclusion_reject(exclusion_id=exclusion.pk, user=bob)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ends_at": at(4, 1), "starts_at": at(4, 2)}, "after the start"),
        ({"note": "  "}, "say what happened"),
        ({"reason": "bad weather"}, "unknown reason"),
        ({"station_id": -1, "location_id": -1}, "one scope at most"),
    ],
)
def test_bad_exclusions_are_refused(operators, fields, message) -> None:
    kwargs = {
        "user": operators[0],
        "starts_at": at(4, 1),
        "ends_at": at(4, 2),
        "reason": "vandalism",
        "note": "Cable cut",
        **fields,
    }
    with pytest.raises(services.ExclusionError, match=message):
        services.uptime_exclusion_create(**kwargs)
    assert not UptimeExclusion.objects.exists()


def test_a_period_starting_mid_fault_uses_the_status_before_it(example) -> None:
    # 10 Apr 12:00 - 11 Apr 00:00: Faulted since 08:00 until 20:00 -> 8 h of 12 down.
    data = uptime.sla_report(start=at(4, 10, 12), end=at(4, 11))
    a = rows_by_station(data)["UP-A"]
    assert a["measured_min"] == 720
    assert a["outage_min"] == 480
    # (720 - 480) / 720 = 33.333%
    assert a["uptime_pct"] == 33.333
