"""The outbox in the panel: webhook endpoints (create, rotate the secret, send a test event),
their delivery log, and the outbox's messages with their dead letters and a redeliver action.

Messages and attempts are written by the outbox alone: the panel reads them and redelivers
dead letters through the service.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from cpo.outbox import services, webhooks
from cpo.outbox.models import DeliveryAttempt, OutboxMessage, WebhookEndpoint
from cpo.outbox.transports import destination_kinds_named, destination_names

STATUS_COLOURS = {
    "pending": "#757575",
    "delivering": "#1565c0",
    "delivered": "#2e7d32",
    "dead": "#c62828",
}


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class EndpointFilter(admin.SimpleListFilter):
    """The messages (or attempts) of one webhook endpoint: its delivery log."""

    title = "webhook endpoint"
    parameter_name = "endpoint"
    message_path = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in WebhookEndpoint.objects.values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        return queryset.filter(
            **{
                f"{self.message_path}destination_kind": webhooks.KIND,
                f"{self.message_path}destination_ref": self.value(),
            }
        )


class AttemptEndpointFilter(EndpointFilter):
    message_path = "message__"


class NamedDestinationFilter(admin.SimpleListFilter):
    """The messages of one named destination ("ocpi:3": a roaming partner), by its name."""

    title = "destination"
    parameter_name = "destination"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            (f"{kind}:{ref}", f"{kind}: {name}")
            for kind in destination_kinds_named()
            for ref, name in sorted(destination_names(kind, None).items(), key=lambda i: i[1])
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        kind, _, ref = (self.value() or "").partition(":")
        if not ref:
            return queryset
        return queryset.filter(destination_kind=kind, destination_ref=ref)


def _status(status: str) -> str:
    return format_html(
        '<strong style="color:{}">{}</strong>', STATUS_COLOURS.get(status, "#000"), status
    )


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=sorted(webhooks.EVENT_TYPES.items()),
        widget=forms.CheckboxSelectMultiple,
        help_text="The events this endpoint receives.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "events", "is_active")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("name", "url", "event_list", "is_active", "dead_letters", "owner")
    list_filter = ("is_active",)
    search_fields = ("name", "url")
    readonly_fields = ("owner", "secret_rotated_at", "created_at", "recent_deliveries")
    actions = ("rotate_secret", "send_test_event")

    @admin.display(description="events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    @admin.display(description="dead letters")
    def dead_letters(self, obj: WebhookEndpoint) -> str:
        count = OutboxMessage.objects.filter(
            destination_kind=webhooks.KIND,
            destination_ref=str(obj.pk),
            status=OutboxMessage.Status.DEAD,
        ).count()
        if not count:
            return "0"
        url = reverse("admin:outbox_outboxmessage_changelist")
        return format_html(
            '<a href="{}?endpoint={}&status__exact=dead" style="color:#c62828">{}</a>',
            url,
            obj.pk,
            count,
        )

    @admin.display(description="delivery log")
    def recent_deliveries(self, obj: WebhookEndpoint) -> str:
        if obj.pk is None:
            return "—"
        attempts = (
            DeliveryAttempt.objects.filter(
                message__destination_kind=webhooks.KIND, message__destination_ref=str(obj.pk)
            )
            .select_related("message")
            .order_by("-id")[:20]
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
            (
                (
                    a.started_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    a.message.topic,
                    a.number,
                    a.status_code or "—",
                    a.duration_ms,
                    a.error or "delivered",
                )
                for a in attempts
            ),
        )
        log = reverse("admin:outbox_deliveryattempt_changelist")
        return format_html(
            '<table id="delivery-log"><tr><th>at</th><th>event</th><th>attempt</th>'
            "<th>status</th><th>took</th><th>outcome</th></tr>{}</table>"
            '<p><a href="{}?endpoint={}">Every attempt</a></p>',
            rows,
            log,
            obj.pk,
        )

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool
    ) -> None:
        data = {field: form.cleaned_data[field] for field in webhooks.WRITABLE}
        if change:
            webhooks.webhook_endpoint_update(endpoint=obj, data=data)
            return
        endpoint, secret = webhooks.webhook_endpoint_create(owner=request.user, **data)
        obj.pk = endpoint.pk
        obj.secret_sealed = endpoint.secret_sealed
        # Shown once, by response_add below; never stored in clear.
        request._webhook_secret = secret  # type: ignore[attr-defined]  # one request's value

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: Any = None
    ) -> HttpResponse:
        secret = getattr(request, "_webhook_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return self._secrets_page(request, [(obj, secret)])

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        webhooks.webhook_endpoint_delete(endpoint=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            webhooks.webhook_endpoint_delete(endpoint=endpoint)

    def _secrets_page(
        self, request: HttpRequest, secrets: list[tuple[WebhookEndpoint, str]]
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Signing secrets",
            "secrets": secrets,
        }
        response = TemplateResponse(request, "outbox/webhook_secrets.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Rotate the signing secret (shown once)", permissions=["change"])
    def rotate_secret(
        self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]
    ) -> HttpResponse:
        secrets = [
            (endpoint, webhooks.webhook_endpoint_rotate_secret(endpoint=endpoint))
            for endpoint in queryset
        ]
        return self._secrets_page(request, secrets)

    @admin.action(description="Send a test event", permissions=["change"])
    def send_test_event(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        sent = [webhooks.webhook_test_send(endpoint=endpoint) for endpoint in queryset]
        self.message_user(
            request, f"{len(sent)} test event(s) queued: see the delivery log.", messages.SUCCESS
        )


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "duration_ms", "status_code", "error", "response_excerpt")
    readonly_fields = fields
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(_ReadOnly):
    list_display = (
        "id",
        "destination",
        "topic",
        "coloured_status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "short_error",
        "created_at",
    )
    list_filter = ("status", "destination_kind", "topic", EndpointFilter, NamedDestinationFilter)
    search_fields = ("idempotency_key", "topic", "ordering_key")
    actions = ("redeliver",)
    show_full_result_count = False
    inlines = (DeliveryAttemptInline,)
    fields = (
        "destination_kind",
        "destination_ref",
        "topic",
        "ordering_key",
        "status",
        "attempts",
        "next_attempt_at",
        "expires_at",
        "method",
        "url",
        "headers",
        "body_text",
        "idempotency_key",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
        "dead_at",
    )
    readonly_fields = fields

    @admin.display(description="destination")
    def destination(self, obj: OutboxMessage) -> str:
        # A named kind (a roaming partner) shows its name.
        name = destination_names(obj.destination_kind, [obj.destination_ref]).get(
            obj.destination_ref
        )
        return f"{obj.destination_kind} {name or obj.destination_ref}"

    @admin.display(description="status", ordering="status")
    def coloured_status(self, obj: OutboxMessage) -> str:
        return _status(obj.status)

    @admin.display(description="last error")
    def short_error(self, obj: OutboxMessage) -> str:
        return obj.last_error[:80]

    @admin.display(description="body")
    def body_text(self, obj: OutboxMessage) -> str:
        return format_html("<pre>{}</pre>", bytes(obj.body).decode("utf-8", "replace"))

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("outbox.redeliver_outboxmessage")

    @admin.action(description="Deliver the selected dead letters again", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        again = sum(services.outbox_message_redeliver(message_id=pk) for pk in ids)
        skipped = len(ids) - again
        note = f" ({skipped} not dead letters, left alone)" if skipped else ""
        self.message_user(request, f"{again} message(s) queued for delivery again{note}.")


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(_ReadOnly):
    list_display = (
        "id",
        "message",
        "number",
        "started_at",
        "status_code",
        "duration_ms",
        "succeeded",
        "error",
    )
    list_filter = ("succeeded", AttemptEndpointFilter)
    list_select_related = ("message",)
    show_full_result_count = False
