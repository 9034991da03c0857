"""The roaming panel: our parties, partners with their credentials history, site parties.

Operators give a pending partner a registration token (an action; the token is shown once),
or register with a partner from its versions URL and token (the partner's Register page).
Partners are never deleted: unregistering keeps their history.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from roaming import push, services
from roaming.models import (
    ClientInfo,
    CredentialsEvent,
    EmspToken,
    IssuedToken,
    LocationParty,
    OurParty,
    Partner,
    RealtimeAuthorization,
    RoamingCommand,
)


@admin.register(OurParty)
class OurPartyAdmin(admin.ModelAdmin):
    list_display = ("country_code", "party_id", "name", "is_default")


@admin.register(LocationParty)
class LocationPartyAdmin(admin.ModelAdmin):
    list_display = ("location", "party")
    list_select_related = ("location", "party")


class CredentialsEventInline(admin.TabularInline):
    model = CredentialsEvent
    extra = 0
    can_delete = False
    fields = ("at", "action", "initiated_by_us", "version", "detail")
    readonly_fields = fields
    ordering = ("-at", "-pk")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class IssuedTokenInline(admin.TabularInline):
    """The tokens we issued, without their values (hash and sealed copy stay hidden)."""

    model = IssuedToken
    extra = 0
    can_delete = False
    fields = ("kind", "created_at", "expires_at", "consumed_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RegisterForm(forms.Form):
    versions_url = forms.URLField(max_length=500, label="Their versions URL", assume_scheme="https")
    token = forms.CharField(
        max_length=64, label="Their token A", widget=forms.PasswordInput(render_value=False)
    )


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "status",
        "version",
        "is_hub",
        "registered_at",
        "last_contact_at",
        "pushes_waiting",
    )
    list_filter = ("status", "version", "is_hub")
    search_fields = ("name",)
    filter_horizontal = ("allowed_parties",)
    actions = ["give_registration_token"]
    fields = (
        "name",
        "is_hub",
        "allowed_parties",
        "status",
        "version",
        "versions_url",
        "encode_token_b64",
        "roles",
        "endpoints",
        "registered_at",
        "unregistered_at",
        "last_contact_at",
        "push_lag",
    )
    readonly_fields = (
        "push_lag",
        "status",
        "version",
        "versions_url",
        "encode_token_b64",
        "roles",
        "endpoints",
        "registered_at",
        "unregistered_at",
        "last_contact_at",
    )
    inlines = [CredentialsEventInline, IssuedTokenInline]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("pushes waiting / dead"))
    def pushes_waiting(self, obj: Partner) -> str:
        lag = push.partner_push_lag(partner_id=obj.pk)
        return f"{lag.waiting} / {lag.dead}"

    @admin.display(description=_("push lag"))
    def push_lag(self, obj: Partner) -> str:
        """What the outbox holds for this partner: waiting messages and the oldest, dead
        letters (linked to the outbox's list, where an Operator delivers them again), and the
        lag of the last hour's deliveries."""
        if obj.pk is None:
            return "-"
        lag = push.partner_push_lag(partner_id=obj.pk)
        messages_url = reverse("admin:outbox_outboxmessage_changelist")
        destination = f"destination=ocpi:{obj.pk}"

        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} s"

        return format_html(
            "{} <a href='{}?{}&status__exact=pending'>{}</a> ({} {})<br>"
            "{} <a href='{}?{}&status__exact=dead'>{}</a><br>"
            "{} {}: {} {}, {} {}",
            _("Waiting:"),
            messages_url,
            destination,
            lag.waiting,
            _("oldest"),
            seconds(lag.oldest_waiting_seconds),
            _("Dead letters:"),
            messages_url,
            destination,
            lag.dead,
            _("Delivered in the last hour:"),
            lag.delivered_last_hour,
            _("median lag"),
            seconds(lag.median_lag_seconds),
            _("max"),
            seconds(lag.max_lag_seconds),
        )

    def has_give_registration_token_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("roaming.give_registration_token")

    def has_register_with_partner_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("roaming.register_with_partner")

    @admin.action(
        description="Give a registration token (token A) to the selected partner",
        permissions=["give_registration_token"],
    )
    def give_registration_token(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one partner.", messages.ERROR)
            return
        partner = queryset.get()
        try:
            token = services.registration_token_issue(partner_id=partner.pk)
        except services.RegistrationError as refused:
            self.message_user(request, f"No token: {refused}", messages.ERROR)
            return
        self.message_user(
            request,
            f"Token A for {partner} (shown once, single use): {token} — with our versions URL "
            f"{services.versions_url()}",
            messages.SUCCESS,
        )

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_register"
        register = path(
            "<path:object_id>/register/", self.admin_site.admin_view(self.register_view), name=name
        )
        return [register, *super().get_urls()]

    def register_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_register_with_partner_permission(request):
            raise PermissionDenied
        partner = get_object_or_404(Partner, pk=object_id)
        form = RegisterForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.partner_register(
                    partner_id=partner.pk,
                    versions_url_theirs=form.cleaned_data["versions_url"],
                    their_token_a=form.cleaned_data["token"],
                )
            except services.RegistrationError as refused:
                form.add_error(None, str(refused))
            else:
                self.message_user(request, f"Registered with {partner}.", messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse(
                        f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                        args=[partner.pk],
                    )
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "partner": partner,
            "form": form,
            "title": f"Register with {partner}",
        }
        return TemplateResponse(request, "admin/roaming/partner/register.html", context)


@admin.register(EmspToken)
class EmspTokenAdmin(admin.ModelAdmin):
    """Tokens the eMSPs pushed: read only here, the eMSP owns them."""

    list_display = ("uid", "type", "country_code", "party_id", "valid", "whitelist", "last_updated")
    list_filter = ("type", "valid", "whitelist", "partner")
    search_fields = ("uid", "contract_id", "visual_number")
    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class _ReadOnly(admin.ModelAdmin):
    """Records of what partners asked and what we answered: written by services only."""

    actions = None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RoamingCommand)
class RoamingCommandAdmin(_ReadOnly):
    """Partner commands (commands, chargingprofiles): the station command each became and the
    result owed at the partner's response URL."""

    list_display = ("created_at", "partner", "type", "station", "result", "deadline")
    list_filter = ("type", "result", "partner")
    list_select_related = ("partner", "station")
    raw_id_fields = ("command", "station", "session", "emsp_token")


@admin.register(RealtimeAuthorization)
class RealtimeAuthorizationAdmin(_ReadOnly):
    list_display = ("at", "partner", "uid", "token_type", "result", "duration_ms")
    list_filter = ("result", "partner")
    list_select_related = ("partner",)
    search_fields = ("uid", "authorization_reference")
    raw_id_fields = ("location",)


@admin.register(ClientInfo)
class ClientInfoAdmin(_ReadOnly):
    list_display = ("partner", "country_code", "party_id", "role", "status", "last_updated")
    list_filter = ("status", "partner")
    list_select_related = ("partner",)
