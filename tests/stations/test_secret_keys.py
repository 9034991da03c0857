"""Masks of secret values (stations.secret_keys), sealing (cpo.lib.sealing) and the scrubbing
of upload tokens from logs (cpo.lib.log_scrub)."""

from __future__ import annotations

import json
import logging

import pytest

from cpo.lib import sealing
from cpo.lib.log_scrub import ScrubTokens, scrub
from stations.secret_keys import SECRET_KEYS, mask, mask_frame, mask_value

SECRET = "0123-the-station-password"


def test_the_one_list_of_secret_keys():
    assert SECRET_KEYS == ("AuthorizationKey", "SecurityCtrlr.BasicAuthPassword")


def test_a_mask_is_set_plus_a_keyed_hash_and_tells_equal_values_apart_only():
    masked = mask_value(SECRET)
    assert masked.startswith("set:")
    assert len(masked) == len("set:") + 16
    assert SECRET not in masked
    assert mask_value(SECRET) == masked
    assert mask_value(SECRET.encode().hex()) == masked  # echoed in hex: the same secret
    assert mask_value(SECRET.encode().hex().upper()) == masked
    assert mask_value("another-password-entirely") != masked
    assert mask_value(masked) == masked  # masking twice changes nothing
    assert mask_value("") == ""  # nothing set: nothing to hide


def test_the_mask_depends_on_the_secret_key(settings):
    masked = mask_value(SECRET)
    settings.SECRET_KEY = "another-deployment"
    assert mask_value(SECRET) != masked


def test_every_place_a_secret_value_travels_in_is_masked():
    v201 = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}
    payloads = [
        {"key": "AuthorizationKey", "value": SECRET},  # 1.6 ChangeConfiguration
        {"configurationKey": [{"key": "authorizationkey", "readonly": False, "value": SECRET}]},
        {"setVariableData": [{**v201, "attributeValue": SECRET}]},  # 2.0.1 SetVariables
        {"getVariableResult": [{**v201, "attributeStatus": "Accepted", "attributeValue": SECRET}]},
        {"reportData": [{**v201, "variableAttribute": [{"type": "Actual", "value": SECRET}]}]},
        {"eventData": [{**v201, "eventId": 1, "actualValue": SECRET}]},
        {
            "component": {"name": "SecurityCtrlr", "evse": {"id": 1}},
            **{
                "variable": {"name": "BasicAuthPassword", "instance": "x"},
                "attributeValue": SECRET,
            },
        },
    ]
    for payload in payloads:
        before = json.dumps(payload)
        masked = mask(payload)
        assert SECRET not in json.dumps(masked), payload
        assert mask_value(SECRET) in json.dumps(masked), payload
        assert json.dumps(payload) == before  # the original (the frame to send) is untouched


def test_other_keys_and_values_are_left_as_they_are():
    payload = {
        "key": "HeartbeatInterval",
        "value": "300",
        "configurationKey": [{"key": "MeterValueSampleInterval", "value": "60"}],
        "setVariableData": [
            {
                "component": {"name": "OCPPCommCtrlr"},
                "variable": {"name": "HeartbeatInterval"},
                "attributeValue": "300",
            }
        ],
    }
    assert mask(payload) is payload


def test_upload_tokens_in_payloads_and_logs():
    url = "https://cpo.example/uploads/diagnostics/s3cr3t-t0ken_x/"
    assert scrub(url) == "https://cpo.example/uploads/diagnostics/[token]/"
    assert (
        scrub(f"POST {url}diag.log")
        == "POST https://cpo.example/uploads/diagnostics/[token]/diag.log"
    )
    assert mask({"location": url, "retries": 1}) == {
        "location": "https://cpo.example/uploads/diagnostics/[token]/",
        "retries": 1,
    }
    record = logging.LogRecord("django.request", logging.WARNING, "", 0, "Gone: %s", (url,), None)
    assert ScrubTokens().filter(record)
    assert record.getMessage() == "Gone: https://cpo.example/uploads/diagnostics/[token]/"


def test_logged_frames_are_masked():
    frame = json.dumps(
        [2, "m1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": SECRET}]
    )
    logged = mask_frame(frame)
    assert SECRET not in logged
    assert json.loads(logged)[3] == {"key": "AuthorizationKey", "value": mask_value(SECRET)}
    answer = json.dumps(
        [3, "m2", {"configurationKey": [{"key": "AuthorizationKey", "value": SECRET}]}]
    )
    assert SECRET not in mask_frame(answer)
    # Broken JSON that names a secret key: withheld whole.
    broken = '[2, "m3", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "' + SECRET
    assert SECRET not in mask_frame(broken)
    heartbeat = '[2,"h1","Heartbeat",{}]'
    assert mask_frame(heartbeat) is heartbeat


def test_sealing_round_trip_and_refusal(settings):
    payload = {"key": "AuthorizationKey", "value": SECRET}
    sealed = sealing.seal(payload)
    assert SECRET not in sealed
    assert sealing.unseal(sealed) == payload
    with pytest.raises(sealing.SealBroken):
        sealing.unseal(sealed[:-4] + "AAAA")
    # A rotated SECRET_KEY still opens what the old one sealed, while it is a fallback.
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "rotated-secret-key-of-the-deployment"
    assert sealing.unseal(sealed) == payload
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(sealing.SealBroken):
        sealing.unseal(sealed)


@pytest.mark.django_db
def test_a_command_whose_seal_cannot_be_opened_fails_and_is_not_sent():
    from datetime import timedelta

    from django.utils import timezone

    from stations.commands.models import Command
    from stations.commands.services import command_claim_next
    from stations.models import ChargingStation

    cs = ChargingStation.objects.create(identity="SEAL-1", protocol="ocpp1.6")
    broken = Command.objects.create(
        station=cs,
        protocol="ocpp1.6",
        action="ChangeConfiguration",
        payload={"key": "AuthorizationKey", "value": mask_value(SECRET)},
        sealed="not-a-sealed-value",
        expires_at=timezone.now() + timedelta(hours=1),
    )
    assert command_claim_next(station_id=cs.pk, node="n") is None
    broken.refresh_from_db()
    assert (broken.status, broken.error_code, broken.sealed) == ("failed", "SealBroken", "")


@pytest.mark.django_db
def test_the_migration_masks_what_is_already_stored():
    from datetime import timedelta
    from importlib import import_module

    from django.apps import apps
    from django.utils import timezone

    from stations.commands.models import Command
    from stations.commands.services import command_claim_next
    from stations.models import ChargingStation, DeviceModelVariable, OcppMessage

    migration = import_module("stations.commands.migrations.0003_sealed_secrets")
    cs = ChargingStation.objects.create(identity="OLD-ROWS", protocol="ocpp1.6")
    clear = {"key": "AuthorizationKey", "value": SECRET}
    waiting = Command.objects.create(
        station=cs,
        protocol="ocpp1.6",
        action="ChangeConfiguration",
        payload=clear,
        expires_at=timezone.now() + timedelta(hours=1),
    )
    answered = Command.objects.create(
        station=cs,
        protocol="ocpp1.6",
        action="GetConfiguration",
        payload={},
        status="accepted",
        response={"configurationKey": [clear]},
        expires_at=timezone.now(),
    )
    frame = json.dumps([2, "x", "ChangeConfiguration", clear])
    OcppMessage.objects.create(station=cs, identity="OLD-ROWS", direction="out", frame=frame)
    DeviceModelVariable.objects.create(
        station=cs, component="SecurityCtrlr", variable="BasicAuthPassword", value=SECRET
    )

    migration.mask_stored(apps, None)

    masked = {"key": "AuthorizationKey", "value": mask_value(SECRET)}
    waiting.refresh_from_db()
    answered.refresh_from_db()
    assert waiting.payload == masked
    assert answered.response == {"configurationKey": [masked]}
    assert answered.sealed == ""
    assert SECRET not in OcppMessage.objects.get(station=cs).frame
    assert DeviceModelVariable.objects.get(station=cs).value == mask_value(SECRET)
    # The waiting command still goes out with its value.
    claimed = command_claim_next(station_id=cs.pk, node="n")
    assert claimed is not None
    assert claimed.payload == clear
