"""Range checks of schema-valid charger messages (stations.ocpp.bounds), the frame parser's
refusals (NaN, nesting) and the message log writer's robustness: unit tests."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from stations.ocpp import bounds, protocol
from stations.services import message_log_write


def ts(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


NOW = ts(timezone.now())


def described(action: str, payload: dict) -> list[str]:
    return [problem.describe() for problem in bounds.problems(action, payload)]


def test_a_sane_message_has_no_problem():
    meter = {
        "connectorId": 1,
        "transactionId": 12,
        "meterValue": [
            {
                "timestamp": NOW,
                "sampledValue": [
                    {"value": "12345.5"},
                    {"value": "7.4", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": "80", "measurand": "SoC"},
                    {"value": "-3.2", "measurand": "Current.Offered"},
                ],
            }
        ],
    }
    assert described("MeterValues", meter) == []
    assert described("DataTransfer", {"vendorId": "v", "data": {"n": 2**70}}) == []


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"timestamp": "9999-12-31T23:59:59Z"}, "timestamp: 9999-12-31T23:59:59Z is more than"),
        ({"timestamp": "1970-01-01T00:00:00Z"}, "days ago"),
        ({"connectorId": 2**31}, "connectorId: 2147483648 is beyond a 32-bit integer"),
        ({"connectorId": -1}, "connectorId: -1 is negative"),
        ({"evse": {"id": -2}}, "evse/id: -2 is negative"),
        ({"meterStart": -5}, "meterStart: -5 Wh is outside 0.."),
        ({"info": "a\u0000b"}, "info: text holds a NUL character"),
        ({"a\u0000": 1}, "a key holds a NUL character"),
        ({"x": float("inf")}, "x: not a finite number"),
    ],
)
def test_absurd_values_are_found_by_their_path(payload, expected):
    found = described("StatusNotification", payload)
    assert len(found) == 1, found
    assert expected in found[0], found


@pytest.mark.parametrize(
    ("sampled", "expected"),
    [
        ({"value": "-1e300"}, "beyond"),
        ({"value": "NaN"}, "not finite"),
        ({"value": "abc"}, "not a number"),
        ({"value": "-5"}, "negative"),
        ({"value": "200000000", "unit": "kWh"}, "beyond"),  # 2e11 Wh
        ({"value": "200", "measurand": "Power.Active.Import", "unit": "MW"}, None),
        ({"value": 5e5, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW"}}, "W"),
        ({"value": "101", "measurand": "SoC"}, "SoC"),
        ({"value": 1, "unitOfMeasure": {"multiplier": 99}}, "multiplier"),
        ({"value": "x", "format": "SignedData"}, None),
    ],
)
def test_sampled_values_within_physical_bounds(sampled, expected):
    problem = bounds.sampled_value_problem(sampled)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem


def test_the_meter_bound_is_a_setting(settings):
    settings.CHARGING_METER_MAX_WH = 1000
    assert bounds.sampled_value_problem({"value": "1001"}) is not None
    assert bounds.sampled_value_problem({"value": "1000"}) is None


def test_the_time_window_is_a_setting(settings):
    settings.OCPP_TIMESTAMP_MAX_FUTURE_DAYS = 0
    assert bounds.time_problem(ts(timezone.now() + timedelta(hours=1))) is not None
    settings.OCPP_TIMESTAMP_MAX_FUTURE_DAYS = 1
    assert bounds.time_problem(ts(timezone.now() + timedelta(hours=1))) is None


def test_repair_drops_absurd_parts_and_says_what():
    payload = {
        "connectorId": 1,
        "idTag": "TAG\u0000",
        "meterStart": -1,
        "timestamp": "9999-01-01T00:00:00Z",
        "reservationId": 2**40,
    }
    repaired = bounds.repair(payload, bounds.problems("StartTransaction", payload))
    assert repaired.payload is not None
    assert repaired.payload["idTag"] == "TAG"
    assert "meterStart" not in repaired.payload
    assert "reservationId" not in repaired.payload
    assert repaired.payload["timestamp"] != payload["timestamp"]
    assert bounds.problems("StartTransaction", repaired.payload) == []
    assert len(repaired.dropped) == 4
    assert payload["idTag"] == "TAG\u0000"  # the original is left alone


def test_repair_drops_sampled_values_and_meter_values():
    payload = {
        "connectorId": 1,
        "transactionId": 3,
        "meterValue": [
            {"timestamp": NOW, "sampledValue": [{"value": "1"}, {"value": "-1e300"}]},
            {"timestamp": "1900-01-01T00:00:00Z", "sampledValue": [{"value": "2"}]},
            {"timestamp": NOW, "sampledValue": [{"value": "3"}]},
        ],
    }
    repaired = bounds.repair(payload, bounds.problems("MeterValues", payload))
    assert repaired.payload is not None
    values = [[s["value"] for s in m["sampledValue"]] for m in repaired.payload["meterValue"]]
    assert values == [["1"], ["3"]]


def test_an_absurd_identifying_field_cannot_be_repaired():
    payload = {"transactionId": 2**40, "meterStop": 1, "timestamp": NOW}
    repaired = bounds.repair(payload, bounds.problems("StopTransaction", payload))
    assert repaired.payload is None


def test_transaction_messages_per_version():
    assert bounds.is_transaction_message(protocol.V16, "StartTransaction", {})
    assert bounds.is_transaction_message(protocol.V16, "MeterValues", {"transactionId": 1})
    assert not bounds.is_transaction_message(protocol.V16, "MeterValues", {"connectorId": 1})
    assert bounds.is_transaction_message(protocol.V201, "TransactionEvent", {})
    assert not bounds.is_transaction_message(protocol.V201, "MeterValues", {})


@pytest.mark.parametrize(
    ("text", "message_id"),
    [
        ('[2,"a","Heartbeat",{"x":NaN}]', "-1"),
        ('[2,"a","Heartbeat",{"x":-Infinity}]', "-1"),
        ("[" * 100_000 + "]" * 100_000, "-1"),
        ('[2,"deep","Heartbeat",{"x":' + "[" * 100_000, "deep"),
        ('[2,"deep2","Heartbeat",{"x":' + "[" * 40 + "]" * 40 + "}]", "deep2"),
    ],
)
def test_parse_refuses_nan_and_deep_nesting(text, message_id):
    with pytest.raises(protocol.FrameError) as refused:
        protocol.parse_frame(text)
    assert refused.value.message_id == message_id


def test_parse_takes_the_nesting_of_real_messages():
    nested = {"a": [{"b": [{"c": {"d": [1]}}]}]}
    frame = protocol.parse_frame(json.dumps([2, "ok", "DataTransfer", nested]))
    assert frame.payload == nested


@pytest.mark.django_db
def test_the_message_log_writer_takes_any_frame():
    from stations.models import OcppMessage

    frames = [
        "[2]",  # a CALL that stops after its type
        '[-1, "neg"]',  # a type the positive column cannot hold
        "[true, 1]",
        f"[{2**70}]",
        '[2, "nul", "A\\u0000", {"x": "\\u0000"}]',
        "raw \x00 text",
        "[" * 5000,
        json.dumps([2, "big", "DataTransfer", {"data": "x" * 300_000}]),
    ]
    message_log_write(
        station_id=None, identity="LOG\x00", entries=[("in", f, True) for f in frames]
    )
    rows = list(OcppMessage.objects.order_by("pk"))
    assert len(rows) == len(frames)
    assert [r.message_type for r in rows[:4]] == [2, None, None, None]
    assert all("\x00" not in r.frame + r.action + r.identity for r in rows)
    assert rows[-1].frame.endswith("bytes in all]")
    assert len(rows[-1].frame) < 2200
