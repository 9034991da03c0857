"""Alert e-mails of incidents, written to the project's outbox (kind "email").

When an incident opens or resolves, `alerts_write` runs inside that transaction: each active
rule the incident matches gets one outbox message (destination: the rule), so the e-mail
exists exactly when the incident change does, and the outbox's worker sends it with retries,
back-off and dead letters. The mail server being down costs detection nothing.

The resolved e-mail answers the opened one: the same subject after "Resolved: ", and
In-Reply-To / References naming the Message-ID the opened one was given (both made from the
incident and the rule, so neither is stored).

Inside a rule's quiet hours an incident that is not critical is held (`HeldAlert`), and
`alert_summaries_send` (each monitoring pass) writes one summary per rule once they end.
A rule with `daily_digest` also gets one e-mail a day (`alert_digests_send`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cpo.outbox.email import KIND, email_body
from cpo.outbox.models import OutboxMessage
from cpo.outbox.services import outbox_enqueue
from stations.monitoring.models import AlertRule, HeldAlert, Incident, IncidentType

OPENED = HeldAlert.Event.OPENED
RESOLVED = HeldAlert.Event.RESOLVED


def _domain() -> str:
    address = parseaddr(settings.DEFAULT_FROM_EMAIL)[1]
    return address.rpartition("@")[2] or "localhost"


def message_id(*, incident_id: int, rule_id: int, event: str) -> str:
    return f"<cpo-incident-{incident_id}-{event}-rule-{rule_id}@{_domain()}>"


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def alert_subject(incident: Incident) -> str:
    """The opened e-mail's subject; the resolved one is this after "Resolved: "."""
    where = incident.station.identity if incident.station is not None else "network"
    return f"[{incident.severity}] {where}: {incident.title}"


def alert_text(incident: Incident, *, event: str) -> str:
    station = incident.station
    site = station.location.name if station is not None and station.location is not None else "-"
    what = "resolved" if event == RESOLVED else "opened"
    lines = [
        f"Incident #{incident.pk} {what}: {incident.title}",
        "",
        f"Type: {IncidentType(incident.type).label} ({incident.type})",
        f"Severity: {incident.severity}",
        f"Station: {station.identity}" + (f" ({station.vendor})" if station.vendor else "")
        if station is not None
        else "Station: -",
        f"Site: {site}",
        f"EVSE: {incident.evse.evse_id if incident.evse is not None else '-'}",
        f"Connector: {incident.connector.connector_id if incident.connector is not None else '-'}",
        f"First seen: {_iso(incident.first_seen_at)}",
        f"Last seen: {_iso(incident.last_seen_at)}",
    ]
    if event == RESOLVED:
        lines.append(f"Resolved: {_iso(incident.resolved_at)}")
    if incident.details:
        lines += ["", "What the station reported:"]
        lines += [f"  {key}: {value}" for key, value in sorted(incident.details.items())]
    return "\n".join(lines) + "\n"


def _headers(incident: Incident, rule: AlertRule, *, event: str) -> dict[str, str]:
    own = message_id(incident_id=incident.pk, rule_id=rule.pk, event=event)
    if event == OPENED:
        return {"Message-ID": own}
    first = message_id(incident_id=incident.pk, rule_id=rule.pk, event=OPENED)
    return {"Message-ID": own, "In-Reply-To": first, "References": first}


def _enqueue(incident: Incident, rule: AlertRule, *, event: str) -> None:
    subject = alert_subject(incident)
    outbox_enqueue(
        destination_kind=KIND,
        destination_ref=str(rule.pk),
        url="mailto:" + ",".join(rule.recipient_list()),
        body=email_body(
            to=rule.recipient_list(),
            subject=f"Resolved: {subject}" if event == RESOLVED else subject,
            text=alert_text(incident, event=event),
            headers=_headers(incident, rule, event=event),
        ),
        topic=f"incident.{event}",
        # A resolved e-mail never overtakes its opened one.
        ordering_key=f"incident:{incident.pk}",
        idempotency_key=f"incident.{event}:{incident.pk}",
    )


def alerts_write(*, event: str, incidents: Iterable[Incident], now: datetime | None = None) -> int:
    """Inside the transaction that opened or resolved `incidents`: one e-mail per matching
    rule, or a held alert in the rule's quiet hours (critical ones are never held). Returns
    the number of e-mails written. Costs one query when no rule is active."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("alerts_write must run in the transaction of the incident change")
    rules = list(AlertRule.objects.filter(is_active=True).order_by("pk"))
    ids = [incident.pk for incident in incidents]
    if not rules or not ids:
        return 0
    now = now or timezone.now()
    loaded = (
        Incident.objects.filter(pk__in=ids)
        .select_related("station__location", "evse", "connector")
        .order_by("pk")
    )
    written = 0
    held: list[HeldAlert] = []
    for incident in loaded:
        for rule in rules:
            if not rule.matches(
                severity=incident.severity,
                type=incident.type,
                location_id=incident.station.location_id if incident.station else None,
            ):
                continue
            if incident.severity != Incident.Severity.CRITICAL and rule.is_quiet(now):
                held.append(HeldAlert(rule=rule, incident=incident, event=event, at=now))
                continue
            _enqueue(incident, rule, event=event)
            written += 1
    HeldAlert.objects.bulk_create(held)
    return written


def summary_text(rule: AlertRule, rows: list[HeldAlert]) -> str:
    lines = [
        f"Held during the quiet hours of {rule.name!r} "
        f"({rule.quiet_start:%H:%M}-{rule.quiet_end:%H:%M} {rule.time_zone}):",
        "",
    ]
    for row in rows:
        incident = row.incident
        connector = incident.connector.connector_id if incident.connector is not None else "-"
        lines.append(
            f"{_iso(row.at)}  {row.event:<8}  #{incident.pk} [{incident.severity}] "
            f"{incident.station.identity if incident.station else '-'} connector {connector}: "
            f"{incident.title}"
            + ("  (resolved since)" if row.event == OPENED and not incident.is_active else "")
        )
    return "\n".join(lines) + "\n"


@transaction.atomic
def alert_summaries_send(*, now: datetime | None = None) -> int:
    """For each rule whose quiet hours are over with alerts held: one summary e-mail to the
    outbox, its held alerts marked as summarised. Returns the number of summaries written."""
    now = now or timezone.now()
    waiting = (
        HeldAlert.objects.select_for_update(of=("self",))
        .filter(summarised_at__isnull=True)
        .select_related("incident__station", "incident__connector", "rule")
        .order_by("rule_id", "at", "pk")
    )
    by_rule: dict[int, list[HeldAlert]] = {}
    for row in waiting:
        by_rule.setdefault(row.rule_id, []).append(row)
    sent = 0
    for rows in by_rule.values():
        rule = rows[0].rule
        if rule.is_quiet(now):
            continue
        if rule.is_active:
            count = len(rows)
            outbox_enqueue(
                destination_kind=KIND,
                destination_ref=str(rule.pk),
                url="mailto:" + ",".join(rule.recipient_list()),
                body=email_body(
                    to=rule.recipient_list(),
                    subject=f"{count} incident alert{'s' if count != 1 else ''} "
                    f"held during quiet hours ({rule.name})",
                    text=summary_text(rule, rows),
                ),
                topic="incident.summary",
                idempotency_key=f"incident.summary:{rows[0].pk}",
            )
            sent += 1
        HeldAlert.objects.filter(pk__in=[row.pk for row in rows]).update(summarised_at=now)
    return sent


def digest_text(rule: AlertRule, *, open_rows: list[Incident], resolved: list[Incident]) -> str:
    def line(incident: Incident) -> str:
        station = incident.station.identity if incident.station is not None else "-"
        return (
            f"  #{incident.pk} [{incident.severity}] {station}: {incident.title}"
            f"  (first seen {_iso(incident.first_seen_at)}"
            + (f", resolved {_iso(incident.resolved_at)}" if incident.resolved_at else "")
            + ")"
        )

    lines = [
        f"Daily digest of {rule.name!r}: {len(open_rows)} open, {len(resolved)} resolved in the "
        "last 24 hours.",
        "",
        f"Open ({len(open_rows)}):",
        *([line(i) for i in open_rows] or ["  none"]),
        "",
        f"Resolved in the last 24 hours ({len(resolved)}):",
        *([line(i) for i in resolved] or ["  none"]),
    ]
    return "\n".join(lines) + "\n"


def _digest_key(rule: AlertRule, now: datetime) -> str | None:
    """The digest's idempotency key for the rule's local day, once the digest hour has come
    there; None before it."""
    local = now.astimezone(ZoneInfo(rule.time_zone))
    if local.hour < settings.MONITORING_DIGEST_HOUR:
        return None
    return f"incident.digest:{rule.pk}:{local:%Y-%m-%d}"


@transaction.atomic
def alert_digests_send(*, now: datetime | None = None, limit: int = 200) -> int:
    """Once a day per rule with `daily_digest`, from MONITORING_DIGEST_HOUR of its time zone:
    one e-mail to the outbox with its open (and acknowledged) incidents and those resolved in
    the last 24 hours; also when there are none (the digest says so: no news is a message).
    Idempotent per rule and local day. Returns the digests written."""
    now = now or timezone.now()
    written = 0
    for rule in AlertRule.objects.filter(is_active=True, daily_digest=True).order_by("pk"):
        key = _digest_key(rule, now)
        if key is None:
            continue
        if OutboxMessage.objects.filter(
            destination_kind=KIND, destination_ref=str(rule.pk), idempotency_key=key
        ).exists():
            continue
        matched = rule.incidents().select_related("station").order_by("first_seen_at", "pk")
        open_rows = list(matched.filter(state__in=Incident.ACTIVE_STATES)[:limit])
        resolved = list(
            matched.filter(
                state=Incident.State.RESOLVED, resolved_at__gte=now - timedelta(hours=24)
            ).order_by("-resolved_at")[:limit]
        )
        outbox_enqueue(
            destination_kind=KIND,
            destination_ref=str(rule.pk),
            url="mailto:" + ",".join(rule.recipient_list()),
            body=email_body(
                to=rule.recipient_list(),
                subject=f"Daily incident digest ({rule.name}): {len(open_rows)} open, "
                f"{len(resolved)} resolved",
                text=digest_text(rule, open_rows=open_rows, resolved=resolved),
            ),
            topic="incident.digest",
            idempotency_key=key,
        )
        written += 1
    return written
