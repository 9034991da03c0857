"""The outbox: one durable row per message to send, and one row per attempt to send it.

A message names its destination by kind and reference (a webhook endpoint's id; later an OCPI
partner, an alert channel), so the outbox knows no user of it. The transport registered for
the kind (`cpo.outbox.transports`) turns the stored request into an HTTP call at send time
(signing it, adding a partner's token), which keeps secrets out of these rows.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class OutboxMessage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERING = "delivering", "delivering"
        DELIVERED = "delivered", "delivered"
        DEAD = "dead", "dead letter"

    # Still to deliver: what orders a destination's messages (see `ordering_key`).
    OPEN = (Status.PENDING, Status.DELIVERING)

    destination_kind = models.CharField(max_length=32, help_text="e.g. webhook")
    destination_ref = models.CharField(max_length=64, help_text="e.g. the webhook endpoint's id")
    topic = models.CharField(max_length=64, blank=True, help_text="e.g. session.started")
    # Messages of one destination with the same non-empty key are delivered one after the
    # other, in id order (a session's start before its end); an empty key is unordered.
    ordering_key = models.CharField(max_length=200, blank=True)
    method = models.CharField(max_length=8, default="POST")
    url = models.CharField(max_length=2000)
    headers = models.JSONField(default=dict, blank=True)
    body = models.BinaryField(default=b"", blank=True)
    # One message per (destination, key): enqueueing it again returns the first row.
    idempotency_key = models.CharField(max_length=200, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Past this time a message that still fails becomes a dead letter (OUTBOX_MAX_AGE_SECONDS).
    expires_at = models.DateTimeField()
    # While delivering: which claim holds it and until when (a worker that died mid-delivery
    # leaves its rows to the sweep once the lease has run out).
    claim = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    dead_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("redeliver_outboxmessage", "Can deliver dead letters again")]
        constraints = [
            models.UniqueConstraint(
                fields=["destination_kind", "destination_ref", "idempotency_key"],
                name="outbox_one_message_per_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "delivering", "delivered", "dead"]),
                name="outbox_status_known",
            ),
        ]
        indexes = [
            # The sweep: pending rows that are due (`outbox_due_destinations`).
            models.Index(
                fields=["next_attempt_at"],
                name="outbox_pending_due",
                condition=Q(status="pending"),
            ),
            # The claim's ordering check: an earlier open message of the same destination and
            # key holds the later ones back; and the sweep's expired leases.
            models.Index(
                fields=["destination_kind", "destination_ref", "ordering_key", "id"],
                name="outbox_open_by_key",
                condition=Q(status__in=["pending", "delivering"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.destination_kind}:{self.destination_ref} {self.topic} #{self.pk}"


class DeliveryAttempt(models.Model):
    """One try to deliver a message: what the destination answered, or why it could not."""

    message = models.ForeignKey(
        OutboxMessage, on_delete=models.CASCADE, related_name="attempts_log"
    )
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of #{self.message_id}"


class WebhookEndpoint(models.Model):
    """An integrator's URL that receives the events it subscribed to, signed with its secret."""

    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    # Sealed (`cpo.lib.sealing`): shown once when created or rotated, never stored in clear.
    secret_sealed = models.TextField(editable=False)
    events = models.JSONField(default=list, help_text="The event types it receives.")
    is_active = models.BooleanField(default=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="webhook_endpoints",
    )
    secret_rotated_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name
