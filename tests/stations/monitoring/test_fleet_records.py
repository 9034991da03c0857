"""The fleet detectors that read what the CSMS recorded rather than what a station says now:
certificates close to expiry (the signed certificates kept on certificate signing requests)
and dead letters of the outbox (a real HTTP receiver on loopback refuses the pushes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import transaction

from cpo.outbox import webhooks
from cpo.outbox.models import OutboxMessage
from cpo.outbox.services import (
    outbox_deliver_destination,
    outbox_enqueue,
    outbox_message_redeliver,
)
from stations.models import CertificateSigningRequest, ChargingStation
from stations.monitoring.detectors import detectors_run
from stations.monitoring.models import Incident, IncidentType, MonitoringThresholds
from tests.cpo.outbox.conftest import receiver as receiver  # a fixture used here

pytestmark = pytest.mark.django_db


def _pem(identity: str, not_after: datetime) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=365))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _found(type_: str) -> list[Incident]:
    return list(Incident.objects.filter(type=type_).order_by("pk"))


def test_nothing_recorded_finds_nothing():
    ChargingStation.objects.create(identity="MON-CERT-0", protocol="ocpp2.0.1")
    CertificateSigningRequest.objects.create(
        station=ChargingStation.objects.get(identity="MON-CERT-0"), csr="CSR", certificate=""
    )
    report = detectors_run()
    assert report[IncidentType.CERTIFICATE_EXPIRY] == {"opened": 0, "present": 0, "resolved": 0}


def test_a_certificate_close_to_expiry_then_renewed(settings):
    settings.MONITORING_CERTIFICATE_EXPIRY_DAYS = 30
    now = datetime.now(UTC)
    soon = ChargingStation.objects.create(identity="MON-CERT-1", protocol="ocpp2.0.1")
    fine = ChargingStation.objects.create(identity="MON-CERT-2", protocol="ocpp2.0.1")
    CertificateSigningRequest.objects.create(
        station=soon,
        csr="CSR",
        certificate_type="ChargingStationCertificate",
        certificate=_pem("MON-CERT-1", now + timedelta(days=10)),
        received_at=now - timedelta(days=355),
    )
    CertificateSigningRequest.objects.create(
        station=fine, csr="CSR", certificate=_pem("MON-CERT-2", now + timedelta(days=200))
    )
    CertificateSigningRequest.objects.create(station=fine, csr="CSR", certificate="not a PEM")
    detectors_run()
    [incident] = _found(IncidentType.CERTIFICATE_EXPIRY)
    assert incident.station_id == soon.pk
    assert incident.severity == Incident.Severity.WARNING
    assert incident.details["certificate_type"] == "ChargingStationCertificate"
    assert incident.details["not_after"].startswith(f"{now + timedelta(days=10):%Y-%m-%d}")
    assert "expires" in incident.title

    # The threshold from the panel: 5 days, so 10 days left is fine.
    MonitoringThresholds.objects.create(certificate_expiry_days=5)
    detectors_run()
    incident.refresh_from_db()
    assert incident.state == Incident.State.RESOLVED
    MonitoringThresholds.objects.all().delete()

    # Expired: an error. Then renewed: the newest certificate of the type decides.
    CertificateSigningRequest.objects.filter(station=soon).update(
        certificate=_pem("MON-CERT-1", now - timedelta(days=1))
    )
    detectors_run()
    expired = _found(IncidentType.CERTIFICATE_EXPIRY)[-1]
    assert expired.state == Incident.State.OPEN
    assert expired.severity == Incident.Severity.ERROR
    CertificateSigningRequest.objects.create(
        station=soon,
        csr="CSR",
        certificate_type="ChargingStationCertificate",
        certificate=_pem("MON-CERT-1", now + timedelta(days=365)),
    )
    detectors_run()
    expired.refresh_from_db()
    assert expired.state == Incident.State.RESOLVED


@pytest.mark.django_db(transaction=True)
def test_dead_letters_of_a_destination_open_an_incident_and_redelivery_clears_it(
    settings, receiver
):
    settings.OUTBOX_MAX_ATTEMPTS = 1
    receiver.answer_with(500, 500)
    hook, _secret = webhooks.webhook_endpoint_create(
        name="integrator", url=receiver.url, events=["session.ended"]
    )
    ref = str(hook.pk)
    with transaction.atomic():
        for topic in ("cdr.created", "session.ended"):
            outbox_enqueue(
                destination_kind="webhook",
                destination_ref=ref,
                url=receiver.url,
                body={"topic": topic},
                topic=topic,
            )
        # Alert e-mail that failed is not counted (it would mail about itself).
        OutboxMessage.objects.create(
            destination_kind="email",
            destination_ref="1",
            url="mailto:ops@example.com",
            status=OutboxMessage.Status.DEAD,
            dead_at=datetime.now(UTC),
            expires_at=datetime.now(UTC),
        )
    outbox_deliver_destination(kind="webhook", ref=ref)
    outbox_deliver_destination(kind="webhook", ref=ref)
    assert len(receiver.requests) == 2
    dead = list(OutboxMessage.objects.filter(destination_kind="webhook", status="dead"))
    assert len(dead) == 2

    detectors_run()
    [incident] = _found(IncidentType.DEAD_LETTERS)
    assert incident.station_id is None
    assert incident.details["dead_letters"] == 2
    assert incident.details["cdrs"] == 1
    assert "1 of them CDRs" in incident.title

    # An operator fixes the endpoint and redelivers: delivered, and the incident clears.
    for message in dead:
        with transaction.atomic():
            assert outbox_message_redeliver(message_id=message.pk)
    outbox_deliver_destination(kind="webhook", ref=ref)
    assert OutboxMessage.objects.filter(destination_kind="webhook", status="delivered").count() == 2
    detectors_run()
    incident.refresh_from_db()
    assert incident.state == Incident.State.RESOLVED


def test_a_certificate_our_ca_signed_close_to_expiry_and_a_revoked_one_ignored(settings):
    from stations.models import StationCertificate

    settings.MONITORING_CERTIFICATE_EXPIRY_DAYS = 30
    now = datetime.now(UTC)
    station = ChargingStation.objects.create(identity="MON-CERT-CA", protocol="ocpp2.0.1")
    for serial, days, status in (("a1", 12, "valid"), ("a0", 2, "revoked")):
        StationCertificate.objects.create(
            station=station,
            serial=serial,
            subject="CN=MON-CERT-CA",
            not_before=now - timedelta(days=300),
            not_after=now + timedelta(days=days),
            status=status,
            pem="-",
        )
    detectors_run()
    [incident] = _found(IncidentType.CERTIFICATE_EXPIRY)
    assert incident.station_id == station.pk
    assert incident.details["not_after"].startswith(f"{now + timedelta(days=12):%Y-%m-%d}")
    # Renewed: a newer valid certificate resolves it.
    StationCertificate.objects.create(
        station=station,
        serial="a2",
        subject="CN=MON-CERT-CA",
        not_before=now,
        not_after=now + timedelta(days=365),
        pem="-",
    )
    detectors_run()
    incident.refresh_from_db()
    assert incident.state == Incident.State.RESOLVED
