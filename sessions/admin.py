"""Operator panel for charging: accounts, drivers, tokens, authorization decisions, sessions.

Tokens, drivers and accounts are written through the services (which announce token changes
to the local-list sync); sessions, meter samples and transaction events are the chargers'
data and read-only here.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import Count, Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from import_export.admin import ImportExportModelAdmin

from cpo.lib.admin_times import LocalTimesMixin
from cpo.lib.formatting import local_text, zone_or_panel
from cpo.lib.spreadsheets import SafeCSV, SafeXLSX
from sessions import selectors, services
from sessions.models import (
    AuthorizationDecision,
    ChargingSession,
    CustomerAccount,
    Driver,
    IdToken,
    MeterSample,
    TransactionEventRecord,
    normalize_uid,
)
from sessions.resources import CustomerAccountResource, DriverResource, IdTokenResource
from stations.commands.admin import SESSION_ACTIONS, SendCommandPermissionMixin

BADGE_COLOURS = {
    "Accepted": "#2e7d32",
    "valid": "#2e7d32",
    "active": "#1565c0",
    "completed": "#757575",
    "incomplete": "#ef6c00",
    "held for review": "#c62828",
    "estimated": "#6a1b9a",
    "Blocked": "#c62828",
    "blocked": "#c62828",
    "Expired": "#ef6c00",
    "expired": "#ef6c00",
    "not yet valid": "#6a1b9a",
}


def badge(label: str) -> str:
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 6px;border-radius:8px;'
        'font-size:11px;white-space:nowrap">{}</span>',
        BADGE_COLOURS.get(label, "#9e9e9e"),
        label,
    )


def admin_link(obj: Any, label: str | None = None) -> str:
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj))


def changelist_link(model: type[Model], label: str, **params: Any) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, label)


class CappedCountPaginator(Paginator):
    """The big append-only tables (samples, events, decisions) are never COUNT(*)-ed: the
    count stops at a cap, which costs at most that many index entries."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return cast("QuerySet[Any]", self.object_list).values("pk")[: self.CAP].count()


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AllOrNothingImportAdmin(ImportExportModelAdmin):
    """CSV and XLSX import/export. Importing needs the add and change permissions, exporting
    the change permission (a whole file of cards, drivers or customers is the work of those who
    manage them, not of everyone who may look one up); a confirmed import that fails after all
    (the data changed since the preview) is reported, not hailed."""

    # The project's formula-safe formats (cpo.lib.spreadsheets): a uid like "=cmd|..." is
    # exported as text a spreadsheet never runs, and imported back unchanged.
    formats = [SafeCSV, SafeXLSX]

    def has_import_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        label, name = opts.app_label, opts.model_name
        return request.user.has_perms([f"{label}.add_{name}", f"{label}.change_{name}"])

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_change_permission(request)

    def process_result(self, result: Any, request: HttpRequest) -> HttpResponse:
        if result.has_errors() or result.has_validation_errors():
            rows = [row.number for row in result.invalid_rows]
            rows += [number for number, _ in result.row_errors()]
            self.message_user(
                request,
                f"Nothing imported: row(s) {', '.join(map(str, sorted(rows)))} are invalid.",
                messages.ERROR,
            )
            opts = self.opts
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_import"))
        return super().process_result(result, request)


def _adopt(obj: Any, created: Any) -> None:
    """Make the admin's unsaved form instance the row a service created."""
    obj.pk = created.pk
    obj._state = created._state
    for field in created._meta.concrete_fields:
        setattr(obj, field.attname, getattr(created, field.attname))


def _form_data(form: ModelForm, names: tuple[str, ...], *, changed_only: bool) -> dict[str, Any]:
    chosen = form.changed_data if changed_only else form.cleaned_data.keys()
    return {name: form.cleaned_data[name] for name in chosen if name in names}


# --- Accounts -------------------------------------------------------------------------------


class DriverInline(ReadOnlyInline):
    model = Driver
    fields = ("name", "reference", "email", "is_active")
    readonly_fields = fields


@admin.register(CustomerAccount)
class CustomerAccountAdmin(AllOrNothingImportAdmin):
    resource_classes = [CustomerAccountResource]
    list_display = (
        "name",
        "reference",
        "kind",
        "legal_name",
        "vat_id",
        "currency",
        "billing_period",
        "driver_count",
        "token_count",
        "is_active",
    )
    list_filter = ("kind", "is_active", "billing_period", "currency")
    search_fields = ("name", "legal_name", "reference", "vat_id", "email")
    readonly_fields = ("created_at",)
    inlines = [DriverInline]
    fieldsets = (
        (None, {"fields": ("name", "reference", "kind", "is_active", "created_at")}),
        (
            "Billing",
            {
                "fields": (
                    "legal_name",
                    "address",
                    "postal_code",
                    "city",
                    "country",
                    "vat_id",
                    "email",
                    "currency",
                    "billing_period",
                    "time_zone",
                )
            },
        ),
        ("Roaming partner", {"fields": ("country_code", "party_id"), "classes": ["collapse"]}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[CustomerAccount]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                _drivers=Count("drivers", distinct=True), _tokens=Count("tokens", distinct=True)
            )
        )

    @admin.display(description="Drivers", ordering="_drivers")
    def driver_count(self, obj: CustomerAccount) -> int:
        return obj._drivers  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="Tokens", ordering="_tokens")
    def token_count(self, obj: CustomerAccount) -> str:
        return changelist_link(IdToken, str(obj._tokens), account__id__exact=obj.pk)  # type: ignore[attr-defined]  # annotated by get_queryset

    def save_model(
        self, request: HttpRequest, obj: CustomerAccount, form: ModelForm, change: bool
    ) -> None:
        if change:
            current = CustomerAccount.objects.get(pk=obj.pk)
            services.account_update(
                account=current,
                data=_form_data(form, services.ACCOUNT_FIELDS, changed_only=True),
            )
        else:
            data = _form_data(form, services.ACCOUNT_FIELDS, changed_only=False)
            _adopt(obj, services.account_create(**data))


# --- Drivers --------------------------------------------------------------------------------


class TokenInline(ReadOnlyInline):
    model = IdToken
    fk_name = "driver"
    fields = ("uid", "type", "visual_number", "blocked", "valid_until")
    readonly_fields = fields


@admin.register(Driver)
class DriverAdmin(AllOrNothingImportAdmin):
    resource_classes = [DriverResource]
    list_display = ("name", "reference", "account", "email", "token_count", "is_active")
    list_filter = ("is_active",)
    list_select_related = ("account",)
    search_fields = (
        "name",
        "reference",
        "email",
        "tokens__uid_normalized",
        "tokens__visual_number",
    )
    autocomplete_fields = ("account",)
    readonly_fields = ("created_at", "recent_sessions")
    inlines = [TokenInline]
    fields = (
        "name",
        "reference",
        "account",
        "email",
        "phone",
        "is_active",
        "created_at",
        "recent_sessions",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Driver]:
        return super().get_queryset(request).annotate(_tokens=Count("tokens"))

    @admin.display(description="Tokens", ordering="_tokens")
    def token_count(self, obj: Driver) -> str:
        return changelist_link(IdToken, str(obj._tokens), driver__id__exact=obj.pk)  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="Sessions")
    def recent_sessions(self, obj: Driver) -> str:
        if obj.pk is None:
            return "-"
        sessions = list(selectors.driver_sessions(driver=obj)[:20])
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} kWh</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    admin_link(s, s.started_at.strftime("%Y-%m-%d %H:%M UTC")),
                    s.station.identity,
                    s.id_tag,
                    s.energy_kwh,
                    format_duration(s),
                    badge(s.status),
                )
                for s in sessions
            ),
        )
        return format_html(
            "<table><tr><th>Started</th><th>Station</th><th>Token</th><th>Energy</th>"
            "<th>Duration</th><th>Status</th></tr>{}</table><p>{}</p>",
            rows,
            changelist_link(ChargingSession, "All sessions of this driver", driver=obj.pk),
        )

    def save_model(self, request: HttpRequest, obj: Driver, form: ModelForm, change: bool) -> None:
        if change:
            current = Driver.objects.get(pk=obj.pk)
            services.driver_update(
                driver=current, data=_form_data(form, services.DRIVER_FIELDS, changed_only=True)
            )
        else:
            data = _form_data(form, services.DRIVER_FIELDS, changed_only=False)
            _adopt(obj, services.driver_create(**data))


# --- Tokens ---------------------------------------------------------------------------------


def token_state(token: IdToken) -> str:
    now = timezone.now()
    if token.blocked:
        return "blocked"
    if token.valid_until and token.valid_until <= now:
        return "expired"
    if token.valid_from and token.valid_from > now:
        return "not yet valid"
    return "valid"


class ValidityFilter(admin.SimpleListFilter):
    title = "validity"
    parameter_name = "validity"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("valid", "Valid now"), ("expired", "Expired"), ("future", "Not yet valid")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[IdToken]) -> QuerySet[IdToken]:
        now = timezone.now()
        if self.value() == "valid":
            return (
                queryset.filter(blocked=False)
                .exclude(valid_until__lte=now)
                .exclude(valid_from__gt=now)
            )
        if self.value() == "expired":
            return queryset.filter(valid_until__lte=now)
        if self.value() == "future":
            return queryset.filter(valid_from__gt=now)
        return queryset


class IdTokenForm(forms.ModelForm):
    class Meta:
        model = IdToken
        fields = (
            "uid",
            "type",
            "visual_number",
            "driver",
            "account",
            "group",
            "in_local_list",
            "blocked",
            "blocked_reason",
            "valid_from",
            "valid_until",
            "max_concurrent_sessions",
            "allowed_locations",
            "allowed_stations",
            "budget_energy_wh",
            "budget_cost",
            "budget_period",
            "issuer_country_code",
            "issuer_party_id",
            "contract_id",
        )

    def clean(self) -> dict[str, Any]:
        data = cast("dict[str, Any]", super().clean())  # a ModelForm's is its cleaned_data
        # The form leaves uid_normalized out of the model's constraint checks: a uid that
        # differs only in case from an existing card is the same card.
        uid = data.get("uid")
        if uid and self.instance.pk is None:
            duplicate = IdToken.objects.filter(
                uid_normalized=normalize_uid(uid),
                type=data.get("type"),
                issuer_country_code=data.get("issuer_country_code", ""),
                issuer_party_id=data.get("issuer_party_id", ""),
            )
            if duplicate.exists():
                self.add_error("uid", "A token with this uid and type already exists.")
        return data


@admin.register(IdToken)
class IdTokenAdmin(AllOrNothingImportAdmin):
    resource_classes = [IdTokenResource]
    form = IdTokenForm
    list_display = (
        "uid",
        "type",
        "visual_number",
        "state",
        "driver_link",
        "account",
        "group",
        "valid_until",
        "max_concurrent_sessions",
    )
    list_filter = ("blocked", ValidityFilter, "type", "in_local_list")
    list_select_related = ("driver", "account", "group")
    # icontains: "04a1" finds "04A1B2C3", as chargers compare uids case-insensitively.
    search_fields = ("uid", "visual_number", "contract_id")
    autocomplete_fields = ("driver", "account", "group", "allowed_locations", "allowed_stations")
    actions = ["block_tokens", "unblock_tokens"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "uid",
                    "type",
                    "visual_number",
                    "driver",
                    "account",
                    "group",
                    "in_local_list",
                )
            },
        ),
        ("Status", {"fields": ("blocked", "blocked_reason", "valid_from", "valid_until")}),
        (
            "Limits",
            {
                "fields": (
                    "max_concurrent_sessions",
                    "allowed_locations",
                    "allowed_stations",
                    "budget_energy_wh",
                    "budget_cost",
                    "budget_period",
                )
            },
        ),
        (
            "Roaming",
            {
                "fields": ("issuer_country_code", "issuer_party_id", "contract_id"),
                "classes": ["collapse"],
            },
        ),
        ("History", {"fields": ("created_at", "updated_at", "recent_decisions")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: IdToken | None = None) -> tuple:
        always = ("created_at", "updated_at", "recent_decisions")
        # What a card is never changes; a mistyped card is deleted and entered again.
        return ("uid", "type", *always) if obj is not None else always

    @admin.display(description="State")
    def state(self, obj: IdToken) -> str:
        return badge(token_state(obj))

    @admin.display(description="Driver", ordering="driver__name")
    def driver_link(self, obj: IdToken) -> str:
        return admin_link(obj.driver) if obj.driver_id else "-"

    @admin.display(description="Recent authorization decisions")
    def recent_decisions(self, obj: IdToken) -> str:
        if obj.pk is None:
            return "-"
        decisions = selectors.token_decisions(token=obj, limit=20)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    d.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    d.station.identity if d.station else "-",
                    d.context,
                    badge(d.status),
                    d.reason,
                )
                for d in decisions
            ),
        )
        return format_html(
            "<table><tr><th>When (UTC)</th><th>Station</th><th>Message</th><th>Status</th>"
            "<th>Reason</th></tr>{}</table>",
            rows,
        )

    def has_block_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("charging.block_idtoken")

    @admin.action(description="Block selected tokens", permissions=["block"])
    def block_tokens(self, request: HttpRequest, queryset: QuerySet[IdToken]) -> None:
        blocked = sum(
            services.id_token_block(token=token, reason=f"blocked by {request.user}")
            for token in queryset
        )
        self.message_user(
            request,
            f"Blocked {blocked} token(s); {queryset.count() - blocked} already were.",
            messages.SUCCESS,
        )

    @admin.action(description="Unblock selected tokens", permissions=["block"])
    def unblock_tokens(self, request: HttpRequest, queryset: QuerySet[IdToken]) -> None:
        unblocked = sum(services.id_token_unblock(token=token) for token in queryset)
        self.message_user(
            request,
            f"Unblocked {unblocked} token(s); {queryset.count() - unblocked} were not blocked.",
            messages.SUCCESS,
        )

    def save_model(self, request: HttpRequest, obj: IdToken, form: ModelForm, change: bool) -> None:
        if change:
            current = IdToken.objects.get(pk=obj.pk)
            services.id_token_update(
                token=current, data=_form_data(form, services.TOKEN_FIELDS, changed_only=True)
            )
        else:
            data = _form_data(form, services.TOKEN_FIELDS, changed_only=False)
            created = services.id_token_create(**data)
            _adopt(obj, created)

    def save_related(
        self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool
    ) -> None:
        # The restrictions go through the service, which announces the change; nothing else
        # on this form is many-to-many.
        services.id_token_set_restrictions(
            token=form.instance,
            locations=list(form.cleaned_data.get("allowed_locations") or []),
            stations=list(form.cleaned_data.get("allowed_stations") or []),
        )
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request: HttpRequest, obj: IdToken) -> None:
        services.id_token_delete(token=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[IdToken]) -> None:
        for token in queryset:
            services.id_token_delete(token=token)


# --- Authorization decisions ----------------------------------------------------------------


@admin.register(AuthorizationDecision)
class AuthorizationDecisionAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "uid",
        "token_link",
        "station",
        "context",
        "status_badge",
        "reason",
    )
    list_filter = ("status", "context")
    list_select_related = ("id_token", "station")
    search_fields = ("uid", "reason", "station__identity")
    paginator = CappedCountPaginator
    show_full_result_count = False

    @admin.display(description="Token")
    def token_link(self, obj: AuthorizationDecision) -> str:
        return admin_link(obj.id_token) if obj.id_token_id else "unknown"

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: AuthorizationDecision) -> str:
        return badge(obj.status)


# --- Sessions -------------------------------------------------------------------------------


def format_duration(session: ChargingSession) -> str:
    seconds = max(0, int(session.duration.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class LiveFilter(admin.SimpleListFilter):
    title = "live or past"
    parameter_name = "live"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("live", "Live"),
            ("past", "Past"),
            ("incomplete", "Ended, start not yet received"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ChargingSession]
    ) -> QuerySet[ChargingSession]:
        if self.value() == "live":
            return queryset.filter(status=ChargingSession.Status.ACTIVE)
        if self.value() == "past":
            return queryset.filter(status=ChargingSession.Status.COMPLETED)
        if self.value() == "incomplete":
            return queryset.filter(status=ChargingSession.Status.INCOMPLETE)
        return queryset


class DriverFilter(admin.SimpleListFilter):
    """A driver's sessions (linked from the driver's page); shown only while selected."""

    title = "driver"
    parameter_name = "driver"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = request.GET.get(self.parameter_name, "")
        if not value.isdigit():
            return []
        return [(str(d.pk), d.name) for d in Driver.objects.filter(pk=int(value))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ChargingSession]
    ) -> QuerySet[ChargingSession]:
        if (value := self.value()) and value.isdigit():
            return queryset.filter(id_token__driver_id=int(value))
        return queryset


class IntegrityFilter(admin.SimpleListFilter):
    """Sessions an operator or finance must look at: what the integrity checks flagged."""

    title = "integrity"
    parameter_name = "integrity"

    def lookups(self, request, model_admin):
        return [
            ("flagged", "With anomalies"),
            ("review", "Held for review"),
            ("estimated", "Closed on an estimate"),
            ("conflicts", "Conflicting re-sent samples"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "flagged":
            return queryset.exclude(anomalies=[])
        if self.value() == "review":
            return queryset.filter(rating_status=ChargingSession.RatingStatus.NEEDS_REVIEW)
        if self.value() == "estimated":
            return queryset.filter(is_estimated=True)
        if self.value() == "conflicts":
            return queryset.filter(sample_conflicts__gt=0)
        return queryset


INTEGRITY_FIELDS = (
    "anomaly_list",
    "needs_review",
    "is_estimated",
    "is_orphan",
    "seq_no_gap",
    "sample_conflicts",
    "late_samples",
)


class TransactionEventInline(ReadOnlyInline):
    model = TransactionEventRecord
    classes = ("collapse",)
    fields = (
        "seq_no",
        "event_type",
        "trigger_reason",
        "local_timestamp",
        "charging_state",
        "offline",
    )
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[TransactionEventRecord]:
        return super().get_queryset(request).select_related("station__location")

    @admin.display(description="Timestamp", ordering="timestamp")
    def local_timestamp(self, obj: TransactionEventRecord) -> str:
        # In the site's zone, as the rest of the session page.
        location = obj.station.location
        tz = zone_or_panel(location.time_zone if location else None)
        return local_text(obj.timestamp, tz, seconds=True)


@admin.register(ChargingSession)
class ChargingSessionAdmin(LocalTimesMixin, SendCommandPermissionMixin, ReadOnlyAdmin):
    actions = [*SESSION_ACTIONS]
    list_display = (
        "started_at",
        "station",
        "transaction_id",
        "id_tag",
        "token_link",
        "account",
        "status_badge",
        "energy",
        "duration",
        "live_cost",
        "auth_status",
        "rating_status",
        "integrity",
    )
    list_filter = (
        LiveFilter,
        IntegrityFilter,
        DriverFilter,
        "auth_status",
        "rating_status",
        "is_orphan",
        "seq_no_gap",
    )
    list_select_related = ("station", "id_token", "account")
    search_fields = ("transaction_id", "id_tag", "station__identity", "=uid")
    date_hierarchy = "started_at"
    paginator = CappedCountPaginator
    show_full_result_count = False
    inlines = [TransactionEventInline]
    readonly_fields = ("energy", "duration", "samples_link", "anomaly_list", "late_samples")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        # What the integrity checks found comes first, in words; the raw columns follow.
        rest = [
            name
            for name in self.get_fields(request, obj)
            if name not in INTEGRITY_FIELDS and name != "anomalies"
        ]
        # The page above shows both in words (cpo/panel/session_page.py): folded here.
        # Every field is read-only here: its date-times in the site's zone, as above.
        return self._local_fieldsets(
            [
                ("Integrity", {"fields": INTEGRITY_FIELDS, "classes": ("collapse",)}),
                ("All fields", {"fields": rest, "classes": ("collapse",)}),
            ],
            {name for name in rest if isinstance(name, str)},
        )

    def object_time_zone(self, obj: ChargingSession) -> Any:
        location = obj.station.location if obj.station_id else None
        return zone_or_panel(location.time_zone if location else None)

    @admin.display(description="Integrity")
    def integrity(self, obj: ChargingSession) -> str:
        marks = []
        if obj.needs_review:
            marks.append(badge("held for review"))
        if obj.is_estimated:
            marks.append(badge("estimated"))
        if obj.status == ChargingSession.Status.INCOMPLETE:
            marks.append(badge("incomplete"))
        if obj.anomalies:
            marks.append(
                badge(f"{len(obj.anomalies)} anomal{'y' if len(obj.anomalies) == 1 else 'ies'}")
            )
        return format_html_join(" ", "{}", ((m,) for m in marks)) if marks else "-"

    @admin.display(description="Anomalies")
    def anomaly_list(self, obj: ChargingSession) -> str:
        if not obj.anomalies:
            return "none"
        return format_html(
            "<ul style='margin:0;padding-left:1.2em'>{}</ul>",
            format_html_join("", "<li>{}</li>", ((a,) for a in obj.anomalies)),
        )

    @admin.display(description="Samples after the stop")
    def late_samples(self, obj: ChargingSession) -> str:
        count = obj.samples.filter(after_stop=True).count()
        if not count:
            return "none"
        return changelist_link(
            MeterSample,
            f"{count} kept, not counted",
            session__id__exact=obj.pk,
            after_stop__exact=1,
        )

    @admin.display(description="Token")
    def token_link(self, obj: ChargingSession) -> str:
        return admin_link(obj.id_token) if obj.id_token_id else (obj.id_tag or "-")

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: ChargingSession) -> str:
        return badge(obj.status)

    @admin.display(description="Energy (kWh)", ordering="energy_wh")
    def energy(self, obj: ChargingSession) -> str:
        return f"{obj.energy_kwh}"

    @admin.display(description="Duration")
    def duration(self, obj: ChargingSession) -> str:
        return format_duration(obj)

    @admin.display(description="Meter samples")
    def samples_link(self, obj: ChargingSession) -> str:
        return changelist_link(
            MeterSample, "Meter samples of this session", session__id__exact=obj.pk
        )


@admin.register(MeterSample)
class MeterSampleAdmin(ReadOnlyAdmin):
    list_display = (
        "timestamp",
        "station",
        "session",
        "evse_id",
        "measurand",
        "phase",
        "context",
        "value",
        "unit",
        "format",
        "after_stop",
    )
    list_filter = ("measurand", "context", "after_stop")
    list_select_related = ("station", "session__station")
    search_fields = ("=station__identity",)
    paginator = CappedCountPaginator
    show_full_result_count = False
    raw_id_fields = ("session", "station")


@admin.register(TransactionEventRecord)
class TransactionEventRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "timestamp",
        "station",
        "transaction_id",
        "seq_no",
        "event_type",
        "trigger_reason",
        "charging_state",
        "offline",
    )
    list_filter = ("event_type", "trigger_reason", "offline")
    list_select_related = ("station",)
    search_fields = ("=transaction_id", "=station__identity")
    paginator = CappedCountPaginator
    show_full_result_count = False
    raw_id_fields = ("session", "station")
