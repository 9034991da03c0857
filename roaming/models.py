"""Roaming over OCPI: our CPO parties, the partners we exchange credentials with, and the
credentials tokens on both sides.

Tokens we issue (a partner calls us with them) are kept as a SHA-256 hash for lookup and a
sealed copy (cpo.lib.sealing) for the credentials GET; tokens a partner issued (we call them
with it) are kept sealed only. No token is ever stored in the clear. Rows are never deleted:
an unregistered partner keeps its tokens (expired) and its credentials history.
"""

from __future__ import annotations

import datetime as dt

from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from sessions.models import ChargingSession
from stations.models import Location

country_code_validator = RegexValidator(r"^[A-Z]{2}$", "two capital letters (ISO 3166-1 alpha-2)")
party_id_validator = RegexValidator(r"^[A-Z0-9]{3}$", "three capital letters or digits")


class OurParty(models.Model):
    """A CPO party we operate as (a sub-operator may be another one)."""

    country_code = models.CharField(max_length=2, validators=[country_code_validator])
    party_id = models.CharField(max_length=3, validators=[party_id_validator])
    name = models.CharField(max_length=100, help_text="Business name shown to partners.")
    website = models.URLField(blank=True)
    is_default = models.BooleanField(
        default=False, help_text="Owns the sites that no other party was given."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "our party"
        verbose_name_plural = "our parties"
        ordering = ["country_code", "party_id"]
        constraints = [
            models.UniqueConstraint(fields=["country_code", "party_id"], name="our_party_unique"),
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_party"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.country_code}*{self.party_id} {self.name}"

    def business_details(self) -> dict[str, str]:
        details = {"name": self.name}
        if self.website:
            details["website"] = self.website
        return details


class LocationParty(models.Model):
    """Which of our parties a site belongs to (sites without a row belong to the default)."""

    location = models.OneToOneField(Location, on_delete=models.CASCADE, related_name="ocpi_party")
    party = models.ForeignKey(OurParty, on_delete=models.PROTECT, related_name="locations")

    class Meta:
        verbose_name = "site party"
        verbose_name_plural = "site parties"

    def __str__(self) -> str:
        return f"{self.location} -> {self.party}"


class ClientStatus(models.TextChoices):
    """OCPI ConnectionStatus (hubclientinfo)."""

    CONNECTED = "CONNECTED"
    OFFLINE = "OFFLINE"
    PLANNED = "PLANNED"
    SUSPENDED = "SUSPENDED"


UNREACHABLE = (ClientStatus.OFFLINE, ClientStatus.SUSPENDED)


class Partner(models.Model):
    """An eMSP or hub platform we exchange OCPI credentials with."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending (no credentials exchanged yet)"
        REGISTERING = "REGISTERING", "Registering (we started the exchange)"
        REGISTERED = "REGISTERED", "Registered"
        UNREGISTERED = "UNREGISTERED", "Unregistered"

    class Version(models.TextChoices):
        V221 = "2.2.1"
        V211 = "2.1.1"

    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    is_hub = models.BooleanField(
        default=False,
        help_text="A hub: its requests must carry the OCPI-from routing headers.",
    )
    allowed_parties = models.ManyToManyField(
        OurParty, blank=True, related_name="partners", help_text="Our parties it may see."
    )
    # What the exchange told us.
    version = models.CharField(max_length=8, choices=Version.choices, blank=True)
    versions_url = models.URLField(max_length=500, blank=True, help_text="Their versions URL.")
    endpoints = models.JSONField(default=list, blank=True, editable=False)
    roles = models.JSONField(
        default=list, blank=True, editable=False, help_text="Their parties (CredentialsRole)."
    )
    # Their token (we call them with it), sealed; and whether they want it base64-encoded.
    their_token_sealed = models.TextField(blank=True, editable=False)
    encode_token_b64 = models.BooleanField(default=True, editable=False)
    registered_at = models.DateTimeField(null=True, blank=True, editable=False)
    unregistered_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_contact_at = models.DateTimeField(null=True, blank=True, editable=False)
    # What a hub's hubclientinfo last said of this platform's connection to it ("" = nothing
    # said: connected). OFFLINE or SUSPENDED: no pushes, no real-time authorization requests.
    client_status = models.CharField(
        max_length=10, choices=ClientStatus.choices, blank=True, editable=False
    )
    # The SSRF guard: a partner's response_url on a private or loopback address is refused
    # unless this is ticked (a partner inside our own network).
    allow_private_urls = models.BooleanField(
        default=False,
        help_text="Accept command response URLs on private or loopback addresses.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("give_registration_token", "Can give a partner a registration token (token A)"),
            ("register_with_partner", "Can register with a partner's versions URL"),
        ]

    def __str__(self) -> str:
        return self.name

    def endpoint_url(self, module: str, role: str = "") -> str | None:
        for endpoint in self.endpoints:
            if endpoint.get("identifier") != module:
                continue
            if role and endpoint.get("role") not in (None, role):
                continue
            return str(endpoint.get("url"))
        return None

    def accepts_traffic(self, party: tuple[str, str] | None = None) -> bool:
        """May we call this platform now (pushes, real-time authorization)? Registered, with
        a token of theirs, and not reported OFFLINE or SUSPENDED by a hub; with `party`
        (country code, party id) behind a hub: that party not reported so either."""
        if self.status != self.Status.REGISTERED or not self.their_token_sealed:
            return False
        if self.client_status in UNREACHABLE:
            return False
        if party is not None and self.is_hub:
            return not self.client_infos.filter(
                country_code=party[0].upper(), party_id=party[1].upper(), status__in=UNREACHABLE
            ).exists()
        return True

    def party_keys(self) -> set[tuple[str, str]]:
        return {
            (str(r.get("country_code", "")).upper(), str(r.get("party_id", "")).upper())
            for r in self.roles
        }


class IssuedToken(models.Model):
    """A credentials token we issued to one partner: the token it calls us with."""

    class Kind(models.TextChoices):
        REGISTRATION = "REGISTRATION", "Registration (token A)"
        CREDENTIALS = "CREDENTIALS", "Credentials (token B or C)"

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="issued_tokens")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    token_sealed = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    # Usable while now < expires_at (None: until revoked, which sets it).
    expires_at = models.DateTimeField(null=True, blank=True)
    # Token A: the exchange it opened committed (a replay of the same POST still answers).
    consumed_at = models.DateTimeField(null=True, blank=True)
    # Token A: the partner's token B of the exchange that consumed it (hash), for replays.
    consumed_by_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.partner} {self.kind} {self.created_at:%Y-%m-%d %H:%M}"

    def is_live(self, now: dt.datetime) -> bool:
        return self.consumed_at is None and (self.expires_at is None or now < self.expires_at)


class CredentialsEvent(models.Model):
    """The history of a partner's credentials: what was exchanged when (never deleted)."""

    class Action(models.TextChoices):
        TOKEN_A_ISSUED = "TOKEN_A_ISSUED"  # noqa: S105 (an event name, not a secret)
        REGISTERED = "REGISTERED"
        UPDATED = "UPDATED"
        UNREGISTERED = "UNREGISTERED"
        FAILED = "FAILED"

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=16, choices=Action.choices)
    initiated_by_us = models.BooleanField(default=False)
    version = models.CharField(max_length=8, blank=True)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.partner} {self.action} {self.at:%Y-%m-%d %H:%M}"


class EmspToken(models.Model):
    """A token an eMSP pushed to us (Tokens module, we are the receiver), keyed as OCPI says:
    country code, party id, uid and type (a uid is unique per type only). Never deleted: the
    eMSP sets `valid` false instead."""

    class Type(models.TextChoices):
        AD_HOC_USER = "AD_HOC_USER"
        APP_USER = "APP_USER"
        OTHER = "OTHER"
        RFID = "RFID"

    class Whitelist(models.TextChoices):
        ALWAYS = "ALWAYS"
        ALLOWED = "ALLOWED"
        ALLOWED_OFFLINE = "ALLOWED_OFFLINE"
        NEVER = "NEVER"

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="tokens")
    country_code = models.CharField(max_length=2)
    party_id = models.CharField(max_length=3)
    uid = models.CharField(max_length=36)
    type = models.CharField(max_length=16, choices=Type.choices)
    contract_id = models.CharField(max_length=36)
    visual_number = models.CharField(max_length=64, blank=True)
    issuer = models.CharField(max_length=64)
    group_id = models.CharField(max_length=36, blank=True)
    valid = models.BooleanField()
    whitelist = models.CharField(max_length=16, choices=Whitelist.choices)
    language = models.CharField(max_length=2, blank=True)
    # The object as the eMSP last sent it (GET answers with it), and its own last_updated.
    data = models.JSONField()
    last_updated = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "eMSP token"
        ordering = ["country_code", "party_id", "uid", "type"]
        constraints = [
            models.UniqueConstraint(
                fields=["country_code", "party_id", "uid", "type"], name="emsp_token_unique"
            )
        ]
        # A session's idTag is looked up by uid alone (which eMSP's token is it?).
        indexes = [models.Index(fields=["uid"], name="emsp_token_uid")]

    def __str__(self) -> str:
        return f"{self.country_code}*{self.party_id} {self.type} {self.uid}"


class RoamingSession(models.Model):
    """A charging session of an eMSP's token: the partner it is reported to (Sessions module
    pushes and GET, CDRs) and when it was last pushed."""

    session = models.OneToOneField(
        ChargingSession, on_delete=models.PROTECT, related_name="roaming"
    )
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="sessions")
    token = models.ForeignKey(
        EmspToken, on_delete=models.PROTECT, null=True, blank=True, related_name="sessions"
    )
    # The last PUT or PATCH enqueued (the periodic PATCH waits OCPI_SESSION_PATCH_MINUTES).
    last_pushed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["partner", "id"], name="roaming_session_partner")]

    def __str__(self) -> str:
        return f"{self.partner} {self.session_id}"


class CdrPush(models.Model):
    """A CDR (or credit CDR) POSTed to an eMSP: one per (CDR, partner), with the URL the
    partner's answer gave in its `Location` header once it acknowledged it."""

    cdr = models.ForeignKey("billing.Cdr", on_delete=models.PROTECT, related_name="roaming_pushes")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="cdr_pushes")
    message_id = models.BigIntegerField(null=True, blank=True, help_text="The outbox message.")
    location_url = models.CharField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "CDR sent to a partner"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["cdr", "partner"], name="cdr_push_once_per_partner")
        ]

    def __str__(self) -> str:
        return f"{self.cdr_id} -> {self.partner}"


class ClientInfo(models.Model):
    """What a hub told us (hubclientinfo, we are the receiver) of a party connected to it."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="client_infos")
    country_code = models.CharField(max_length=2)
    party_id = models.CharField(max_length=3)
    role = models.CharField(max_length=8)
    status = models.CharField(max_length=10, choices=ClientStatus.choices)
    last_updated = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "hub client info"
        ordering = ["country_code", "party_id", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["partner", "country_code", "party_id", "role"], name="client_info_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.country_code}*{self.party_id} {self.role} {self.status}"


class RealtimeAuthorization(models.Model):
    """One real-time authorization request we made to a partner, with what came of it."""

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="+")
    uid = models.CharField(max_length=36)
    token_type = models.CharField(max_length=16)
    location = models.ForeignKey(
        Location, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # ALLOWED, BLOCKED, EXPIRED, NO_CREDIT, NOT_ALLOWED; or TIMEOUT / FAILED (no answer).
    result = models.CharField(max_length=12)
    authorization_reference = models.CharField(max_length=36, blank=True)
    detail = models.CharField(max_length=255, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["uid", "at"], name="realtime_auth_uid_idx")]

    def __str__(self) -> str:
        return f"{self.partner} {self.uid} {self.result}"


class RoamingCommand(models.Model):
    """A command a partner sent us (commands or chargingprofiles, we are the receiver): the
    station's command of our durable queue it became, and the result we owe the partner at
    its response_url (posted through the outbox)."""

    class Type(models.TextChoices):
        START_SESSION = "START_SESSION"
        STOP_SESSION = "STOP_SESSION"
        RESERVE_NOW = "RESERVE_NOW"
        CANCEL_RESERVATION = "CANCEL_RESERVATION"
        UNLOCK_CONNECTOR = "UNLOCK_CONNECTOR"
        # chargingprofiles
        SET_CHARGING_PROFILE = "SET_CHARGING_PROFILE"
        GET_ACTIVE_PROFILE = "GET_ACTIVE_PROFILE"
        CLEAR_PROFILE = "CLEAR_PROFILE"

    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="commands")
    version = models.CharField(max_length=8)
    type = models.CharField(max_length=24, choices=Type.choices)
    request = models.JSONField()
    response_url = models.URLField(max_length=500)
    command = models.OneToOneField(
        "commands.Command",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="roaming",
    )
    station = models.ForeignKey(
        "stations.ChargingStation", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    session = models.ForeignKey(
        "charging.ChargingSession", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    # The token it carries (START_SESSION, RESERVE_NOW), and its id tag as sent to the station
    # (a 1.6 station holds 20 characters: a longer uid gets a stable surrogate).
    emsp_token = models.ForeignKey(
        EmspToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    id_tag = models.CharField(max_length=36, blank=True)
    authorization_reference = models.CharField(max_length=36, blank=True)
    # RESERVE_NOW: the partner's reservation id and ours (an OCPP reservation id is an int).
    their_reservation_id = models.CharField(max_length=36, blank=True)
    reservation_id = models.IntegerField(null=True, blank=True, unique=True)
    deadline = models.DateTimeField()
    # The result we owe (CommandResult / ActiveChargingProfileResult ...), "" while pending.
    result = models.CharField(max_length=24, blank=True)
    result_body = models.JSONField(null=True, blank=True)
    result_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "partner command"
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(
                fields=["deadline"], name="roaming_command_due_idx", condition=models.Q(result="")
            ),
            models.Index(fields=["station", "id_tag"], name="roaming_command_tag_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.partner} {self.type} {self.result or 'pending'}"
