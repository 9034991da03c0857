"""Writes of a station's security over OCPP: certificates from our CA, trusted roots, password
rotation and security-profile upgrades.

Every change that needs the station's consent is a command of the durable queue with a
`SecurityChange` beside it: a rotated password's hash and a raised profile take effect when the
station accepts (`security_change_result`, called from `results.command_result_record`), so the
old password keeps working until then and a station that refused keeps connecting as before.
Passwords are never shown back: the clear value exists only sealed in the queued command.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from stations import pki
from stations.commands import services
from stations.commands.models import Command, SecurityChange
from stations.commands.verbs import CommandError
from stations.models import (
    CertificateSigningRequest,
    ChargingStation,
    StationCertificate,
    TrustedRoot,
)

logger = logging.getLogger(__name__)

# 1.6 AuthorizationKey: 20 characters, sent as 40 hex digits (security whitepaper). 2.0.1
# BasicAuthPassword: up to 40 characters; 32 random URL-safe ones.
PASSWORD_LENGTH: dict[str, int] = {"ocpp1.6": 20, "ocpp2.0.1": 32}
PASSWORD_KEY: dict[str, str] = {
    "ocpp1.6": "AuthorizationKey",
    "ocpp2.0.1": "SecurityCtrlr.BasicAuthPassword",
}


def _user(requested_by: Any) -> Any:
    return requested_by if getattr(requested_by, "pk", None) else None


# --- Password rotation ----------------------------------------------------------------------


@transaction.atomic
def password_rotate(
    *, station: ChargingStation, requested_by: Any = None, origin: str = Command.Origin.ADMIN
) -> SecurityChange:
    """Send the station a new random password (1.6 ChangeConfiguration AuthorizationKey in
    hex, 2.0.1 SetVariables SecurityCtrlr.BasicAuthPassword); it becomes the one checked at
    the handshake when the station accepts. Raises CommandError when it cannot be sent."""
    protocol = station.protocol
    if protocol not in PASSWORD_KEY:
        raise CommandError("the station has not connected yet: its protocol is unknown")
    password = secrets.token_urlsafe(PASSWORD_LENGTH[protocol])[: PASSWORD_LENGTH[protocol]]
    value = password.encode().hex() if protocol == ChargingStation.Protocol.OCPP16 else password
    command = services.command_create(
        station=station,
        verb="set_configuration",
        params={"key": PASSWORD_KEY[protocol], "value": value},
        origin=Command.Origin.SECURITY,
        requested_by=requested_by,
    )
    placeholder = ChargingStation(identity=station.identity)
    placeholder.set_password(password)
    change = SecurityChange.objects.create(
        station=station,
        kind=SecurityChange.Kind.PASSWORD,
        command=command,
        password_hash=placeholder.password_hash,
        requested_by=_user(requested_by),
    )
    logger.info("password rotation of %s queued (command %s)", station.identity, command.pk)
    return change


# --- Security profiles ----------------------------------------------------------------------


def _valid_certificate(station: ChargingStation) -> StationCertificate | None:
    return (
        StationCertificate.objects.filter(
            station=station,
            status=StationCertificate.Status.VALID,
            certificate_type="ChargingStationCertificate",
            not_after__gt=timezone.now(),
        )
        .order_by("-not_after")
        .first()
    )


@transaction.atomic
def security_profile_upgrade(
    *,
    station: ChargingStation,
    profile: int,
    requested_by: Any = None,
    origin: str = Command.Origin.ADMIN,
) -> SecurityChange:
    """Raise the station's security profile: first its prerequisites (our CSMS root for TLS;
    for profile 3 a valid certificate of ours must exist), then the switch (1.6
    ChangeConfiguration SecurityProfile; 2.0.1 SetNetworkProfile with our URL, then
    SetVariables OCPPCommCtrlr.NetworkConfigurationPriority). The stored profile, below which
    connections are refused, rises when the station accepted them all. A downgrade is
    refused."""
    locked = ChargingStation.objects.select_for_update().get(pk=station.pk)
    if profile not in (1, 2, 3):
        raise CommandError("the security profile is 1, 2 or 3", field="profile")
    if profile <= locked.security_profile:
        raise CommandError(
            f"the station is on security profile {locked.security_profile}: a downgrade "
            f"(or the same profile) is refused",
            field="profile",
        )
    if profile == 3 and _valid_certificate(locked) is None:
        raise CommandError(
            "profile 3 needs a valid client certificate of our CA first: have the station "
            "send a CSR (trigger SignChargingStationCertificate)",
            field="profile",
        )
    prerequisites: list[Command] = []
    if profile >= 2:
        prerequisites.append(
            root_install(
                station=locked,
                root=csms_root(),
                requested_by=requested_by,
                origin=Command.Origin.SECURITY,
            )
        )
    if locked.protocol == ChargingStation.Protocol.OCPP16:
        switch = services.command_create(
            station=locked,
            verb="set_configuration",
            params={"key": "SecurityProfile", "value": str(profile)},
            origin=Command.Origin.SECURITY,
            requested_by=requested_by,
        )
    elif locked.protocol == ChargingStation.Protocol.OCPP201:
        if not settings.OCPP_CSMS_URL:
            raise CommandError(
                "set OCPP_CSMS_URL (this CSMS's wss:// address) to upgrade a 2.0.1 station"
            )
        slot = settings.OCPP_NETWORK_PROFILE_SLOT
        prerequisites.append(
            services.command_create(
                station=locked,
                action="SetNetworkProfile",
                payload={
                    "configurationSlot": slot,
                    "connectionData": {
                        "ocppVersion": "OCPP20",
                        "ocppTransport": "JSON",
                        "ocppCsmsUrl": settings.OCPP_CSMS_URL,
                        "messageTimeout": settings.OCPP_RESPONSE_TIMEOUT,
                        "securityProfile": profile,
                        "ocppInterface": "Wired0",
                    },
                },
                origin=Command.Origin.SECURITY,
                requested_by=requested_by,
            )
        )
        switch = services.command_create(
            station=locked,
            verb="set_configuration",
            params={"key": "OCPPCommCtrlr.NetworkConfigurationPriority", "value": str(slot)},
            origin=Command.Origin.SECURITY,
            requested_by=requested_by,
        )
    else:
        raise CommandError("the station has not connected yet: its protocol is unknown")
    change = SecurityChange.objects.create(
        station=locked,
        kind=SecurityChange.Kind.PROFILE,
        command=switch,
        profile=profile,
        prerequisites=[c.pk for c in prerequisites],
        requested_by=_user(requested_by),
    )
    return change


@transaction.atomic
def security_change_result(*, command: Command) -> SecurityChange | None:
    """A security command ended: apply its change if the station accepted (and, for an
    upgrade, accepted its prerequisites too), else record it refused."""
    change = (
        SecurityChange.objects.select_for_update()
        .filter(command=command, status=SecurityChange.Status.PENDING)
        .first()
    )
    if change is None:
        return None
    accepted = command.status == Command.Status.ACCEPTED
    if accepted and change.prerequisites:
        statuses = Command.objects.filter(pk__in=change.prerequisites).values_list(
            "status", flat=True
        )
        accepted = all(status == Command.Status.ACCEPTED for status in statuses)
    change.status = SecurityChange.Status.APPLIED if accepted else SecurityChange.Status.REFUSED
    change.completed_at = timezone.now()
    change.save(update_fields=["status", "completed_at"])
    if accepted:
        station = ChargingStation.objects.select_for_update().get(pk=change.station_id)
        if change.kind == SecurityChange.Kind.PASSWORD:
            station.password_hash = change.password_hash
            station.save(update_fields=["password_hash", "updated_at"])
        elif change.profile and change.profile > station.security_profile:
            station.security_profile = change.profile
            station.save(update_fields=["security_profile", "updated_at"])
    logger.info("%s of station %s: %s", change.get_kind_display(), change.station_id, change.status)
    return change


# --- Certificates ----------------------------------------------------------------------------


@transaction.atomic
def csr_receive(*, station_id: int, csr: str, certificate_type: str = "") -> tuple[int, str]:
    """Record a SignCertificate's CSR and check it; returns (the CSR's id, "") when we sign it
    (after the answer: `csr_sign`), or (id, why not) when the answer is Rejected."""
    identity = ChargingStation.objects.values_list("identity", flat=True).get(pk=station_id)
    row = CertificateSigningRequest.objects.create(
        station_id=station_id, csr=csr, certificate_type=certificate_type
    )
    if certificate_type not in ("", "ChargingStationCertificate"):
        return row.pk, f"{certificate_type}: no V2G certificate authority here"
    try:
        pki.csr_check(csr, identity=identity)
    except pki.PkiError as error:
        logger.warning("CSR of %s refused: %s", identity, error.message)
        return row.pk, error.message
    return row.pk, ""


@transaction.atomic
def csr_sign(*, csr_id: int) -> StationCertificate:
    """Sign a checked CSR with our CA, store the certificate and queue CertificateSigned with
    the chain (certificate, intermediate)."""
    row = CertificateSigningRequest.objects.select_related("station").get(pk=csr_id)
    station = row.station
    signed = pki.csr_sign(pki.csr_check(row.csr, identity=station.identity))
    certificate = StationCertificate.objects.create(
        station=station,
        certificate_type="ChargingStationCertificate",
        serial=signed.serial,
        subject=signed.subject,
        not_before=signed.certificate.not_valid_before_utc,
        not_after=signed.certificate.not_valid_after_utc,
        pem=signed.chain_pem.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n",
    )
    row.certificate = signed.chain_pem
    row.signed_at = timezone.now()
    row.save(update_fields=["certificate", "signed_at"])
    params: dict[str, Any] = {"certificate_chain": signed.chain_pem}
    if station.protocol == ChargingStation.Protocol.OCPP201:
        params["certificate_type"] = "charging_station"
    services.command_create(station=station, verb="certificate_signed", params=params)
    return certificate


def _crl_refresh() -> None:
    revoked = list(
        StationCertificate.objects.filter(status=StationCertificate.Status.REVOKED).values_list(
            "serial", "revoked_at"
        )
    )
    pki.crl_write([(serial, at) for serial, at in revoked if at is not None])


@transaction.atomic
def certificate_revoke(*, certificate: StationCertificate, by: str) -> bool:
    """Revoke a certificate of ours: refused at the handshake from now on, and listed in the
    CRL (PKI_DIR/crl.pem) for a TLS proxy. Returns whether it was still valid."""
    updated = StationCertificate.objects.filter(
        pk=certificate.pk, status=StationCertificate.Status.VALID
    ).update(status=StationCertificate.Status.REVOKED, revoked_at=timezone.now(), revoked_by=by)
    if updated:
        logger.warning(
            "certificate %s of station %s revoked by %s",
            certificate.serial,
            certificate.station_id,
            by,
        )
        transaction.on_commit(_crl_refresh)
    return bool(updated)


def csms_root() -> TrustedRoot:
    """Our CA's root as a TrustedRoot (stored on first use)."""
    ca = pki.authority()
    serial = pki.serial_hex(ca.root)
    root, _ = TrustedRoot.objects.get_or_create(
        kind=TrustedRoot.Kind.CSMS_ROOT,
        serial=serial,
        defaults={
            "name": "Our CSMS root",
            "pem": ca.root_pem,
            "subject": ca.root.subject.rfc4514_string()[:255],
            "not_after": ca.root.not_valid_after_utc,
        },
    )
    return root


def trusted_root_build(*, name: str, kind: str, pem: str) -> TrustedRoot:
    """An unsaved root from what an operator supplies (a manufacturer's, a V2G root), its
    serial, subject and end read from the certificate; PkiError if it is not one."""
    if kind not in TrustedRoot.Kind.values:
        raise pki.PkiError(f"unknown kind {kind!r}")
    certificate = pki.certificate_load(pem)
    return TrustedRoot(
        name=name[:100],
        kind=kind,
        pem=pem.strip() + "\n",
        serial=pki.serial_hex(certificate),
        subject=certificate.subject.rfc4514_string()[:255],
        not_after=certificate.not_valid_after_utc,
    )


@transaction.atomic
def trusted_root_create(*, name: str, kind: str, pem: str) -> TrustedRoot:
    root = trusted_root_build(name=name, kind=kind, pem=pem)
    root.save()
    return root


@transaction.atomic
def root_install(
    *,
    station: ChargingStation,
    root: TrustedRoot,
    requested_by: Any = None,
    origin: str = Command.Origin.ADMIN,
) -> Command:
    """InstallCertificate of a stored root on the station."""
    return services.command_create(
        station=station,
        verb="install_certificate",
        params={"certificate_type": root.kind, "certificate": root.pem},
        origin=origin,
        requested_by=requested_by,
    )


@transaction.atomic
def root_delete(
    *,
    station: ChargingStation,
    root: TrustedRoot,
    requested_by: Any = None,
    origin: str = Command.Origin.ADMIN,
) -> Command:
    """DeleteCertificate of a stored root, named by its hash data."""
    return services.command_create(
        station=station,
        verb="delete_certificate",
        params=pki.certificate_hash_data(root.pem),
        origin=origin,
        requested_by=requested_by,
    )


@transaction.atomic
def certificates_renew(*, now: Any = None) -> int:
    """Ask each station whose valid certificate of ours ends within PKI_RENEW_DAYS for a new
    CSR (TriggerMessage / 1.6 ExtendedTriggerMessage SignChargingStationCertificate), once a
    day at most. Returns how many were asked."""
    now = now or timezone.now()
    due = (
        StationCertificate.objects.select_for_update(skip_locked=True)
        .filter(
            status=StationCertificate.Status.VALID,
            certificate_type="ChargingStationCertificate",
            not_after__lte=now + timedelta(days=settings.PKI_RENEW_DAYS),
            not_after__gt=now,
        )
        .exclude(renewal_requested_at__gt=now - timedelta(days=1))
        .select_related("station")
    )
    asked = 0
    for certificate in due:
        # A newer certificate of the same station that is not due makes this one moot.
        if StationCertificate.objects.filter(
            station_id=certificate.station_id,
            status=StationCertificate.Status.VALID,
            not_after__gt=now + timedelta(days=settings.PKI_RENEW_DAYS),
        ).exists():
            continue
        try:
            services.command_create(
                station=certificate.station,
                verb="trigger_message",
                params={"message": "SignChargingStationCertificate"},
            )
        except CommandError as error:
            logger.warning("cannot renew %s: %s", certificate.station.identity, error.message)
            continue
        certificate.renewal_requested_at = now
        certificate.save(update_fields=["renewal_requested_at"])
        asked += 1
    return asked
