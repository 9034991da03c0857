"""Reads of the outbox: the dashboard's dead-letter alert, an endpoint's deliveries."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Min, QuerySet

from cpo.lib.formatting import admin_url, iso
from cpo.outbox import webhooks
from cpo.outbox.models import DeliveryAttempt, OutboxMessage


def dead_letter_alerts() -> dict[str, Any]:
    """One dashboard alert while any message is a dead letter: how many, of which kinds, since
    when (one query)."""
    rows = (
        OutboxMessage.objects.filter(status=OutboxMessage.Status.DEAD)
        .values("destination_kind")
        .annotate(n=Count("pk"), since=Min("dead_at"))
        .order_by()
    )
    per_kind = {row["destination_kind"]: (row["n"], row["since"]) for row in rows}
    total = sum(n for n, _ in per_kind.values())
    items = []
    if total:
        since = min((at for _, at in per_kind.values() if at is not None), default=None)
        items.append(
            {
                "kind": "outbox_dead_letters",
                "severity": "error",
                "title": f"{total} message(s) could not be delivered",
                "detail": ", ".join(f"{n} {kind}" for kind, (n, _) in sorted(per_kind.items())),
                "since": iso(since) if since is not None else None,
                "url": admin_url("outbox_outboxmessage_changelist") + "?status__exact=dead",
            }
        )
    return {"items": items, "counts": {"outbox_dead_letters": total}}


def endpoint_deliveries(*, endpoint_id: int) -> QuerySet[DeliveryAttempt]:
    return (
        DeliveryAttempt.objects.filter(
            message__destination_kind=webhooks.KIND, message__destination_ref=str(endpoint_id)
        )
        .select_related("message")
        .order_by("-id")
    )
