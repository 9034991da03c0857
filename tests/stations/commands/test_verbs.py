"""The typing of verb parameters: whatever an edge sends (form text, JSON, query strings), the
station gets the types its schema wants, or the caller gets an error naming the parameter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stations.commands import services
from stations.commands.verbs import VERBS, CommandError, params_clean
from stations.models import ChargingStation

pytestmark = pytest.mark.django_db

PROTOCOLS = ["ocpp1.6", "ocpp2.0.1"]


def test_every_integer_parameter_given_as_text_becomes_an_integer() -> None:
    for verb in VERBS.values():
        for param in verb.params:
            if param.kind != "int":
                continue
            clean = params_clean(verb.name, {param.name: " 2 "})
            assert clean == {param.name: 2}, (verb.name, param.name)
            assert type(clean[param.name]) is int


@pytest.mark.parametrize("value", ["1.5", "two", "", True, 1.5, [1], {"id": 1}])
def test_an_integer_parameter_refuses_what_is_not_a_whole_number(value: object) -> None:
    if value == "":
        # Empty is absent, as a form's empty field is.
        assert params_clean("remote_start", {"id_token": "T", "evse_id": value}) == {
            "id_token": "T"
        }
        return
    with pytest.raises(CommandError) as error:
        params_clean("remote_start", {"id_token": "T", "evse_id": value})
    assert error.value.field == "evse_id"
    assert "evse_id must be a whole number" in error.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("True", True), ("on", True), ("1", True), ("false", False), ("0", False)],
)
def test_boolean_parameters_read_form_text(text: str, expected: bool) -> None:
    assert params_clean("change_availability", {"operative": text}) == {"operative": expected}


def test_a_boolean_parameter_refuses_other_text() -> None:
    with pytest.raises(CommandError) as error:
        params_clean("change_availability", {"operative": "maybe"})
    assert error.value.field == "operative"


def test_text_parameters_take_numbers_and_refuse_structures() -> None:
    assert params_clean("remote_stop", {"transaction_id": 42}) == {"transaction_id": "42"}
    with pytest.raises(CommandError) as error:
        params_clean("remote_stop", {"transaction_id": {"id": 42}})
    assert error.value.field == "transaction_id"


def test_date_times_must_be_iso_with_a_zone() -> None:
    moment = datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert params_clean("get_log", {"start_time": moment}) == {"start_time": moment.isoformat()}
    assert params_clean("get_log", {"start_time": "2030-01-01T12:00:00Z"}) == {
        "start_time": "2030-01-01T12:00:00+00:00"
    }
    for bad in ("2030-01-01T12:00:00", "2030-13-01T12:00:00Z", "soon", 5):
        with pytest.raises(CommandError) as error:
            params_clean("get_log", {"start_time": bad})
        assert error.value.field == "start_time", bad


def test_lists_come_as_lists_or_comma_separated_text() -> None:
    assert params_clean("get_configuration", {"keys": "A, B\nC"}) == {"keys": ["A", "B", "C"]}
    assert params_clean("get_configuration", {"keys": ["A"]}) == {"keys": ["A"]}


def test_a_parameter_the_verb_does_not_have_is_refused_not_dropped() -> None:
    with pytest.raises(CommandError) as error:
        params_clean("remote_start", {"id_token": "T", "connectorId": "1"})
    assert error.value.field == "connectorId"
    assert "evse_id" in error.value.message
    with pytest.raises(CommandError, match="unknown verb"):
        params_clean("launch", {})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_form_text_reaches_the_payload_as_the_schema_types(protocol: str) -> None:
    """What the station page posts, as text, becomes the integer and boolean the station
    must receive, on both protocols (the schema check of the encoded call would refuse any
    string id)."""
    station = ChargingStation.objects.create(identity=f"TYPED-{protocol}", protocol=protocol)

    def payload(verb: str, **params: str) -> dict:
        return services.command_create(station=station, verb=verb, params=params).payload

    start = payload("remote_start", evse_id="2", id_token="TAG")
    unlock = payload("unlock_connector", evse_id="2", connector_id="1")
    available = payload("change_availability", evse_id="2", connector_id="1", operative="True")
    trigger = payload("trigger_message", message="StatusNotification", evse_id="2")
    if protocol == "ocpp1.6":
        assert start["connectorId"] == 2
        assert unlock == {"connectorId": 2}
        assert available == {"connectorId": 2, "type": "Operative"}
        assert trigger["connectorId"] == 2
    else:
        assert start["evseId"] == 2
        assert unlock == {"evseId": 2, "connectorId": 1}
        assert available == {"operationalStatus": "Operative", "evse": {"id": 2, "connectorId": 1}}
        assert trigger["evse"] == {"id": 2}
    for body in (start, unlock, available, trigger):
        assert "'2'" not in repr(body)
        assert "'1'" not in repr(body)
