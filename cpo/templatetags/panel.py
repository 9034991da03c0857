"""Template tags of the operator panel: the home dashboard, the station page and role menus."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.html import conditional_escape, format_html
from django.utils.translation import gettext, ngettext

from cpo.lib.formatting import (
    admin_url,
    display_money,
    display_number,
    iso,
    local_text,
    money_text,
    relative_text,
    zone_label,
    zone_or_panel,
)
from cpo.panel import dashboard, menus, session_page
from cpo.panel.views import QUICK_COMMANDS
from sessions.selectors import station_recent_sessions
from stations.commands import permissions as command_permissions
from stations.selectors import station_recent_messages

register = template.Library()


@register.simple_tag
def panel_dashboard(request: Any) -> dict[str, Any]:
    """Everything the home page shows at load; the page then refreshes it from JSON."""
    user = request.user
    can_network = user.has_perm("stations.view_chargingstation")
    can_sessions = user.has_perm("charging.view_chargingsession")
    widgets = [
        w
        for w in menus.role_widgets(user)
        if (w in ("network", "alerts", "live_sessions", "money") and can_network)
        or (w in ("energy_chart", "revenue_chart") and can_sessions)
    ]
    charts = dashboard.charts(days=30, months=12) if can_sessions else {}
    role = menus.panel_role(user)
    return {
        "role": role,
        "role_label": str(menus.ROLE_LABELS[role]),
        "texts": panel_texts(),
        "widgets": widgets,
        "summary": dashboard.dashboard_summary() if can_network else None,
        "charts": charts,
        "links": menus.quick_links(user),
        "refresh_ms": settings.PANEL_REFRESH_SECONDS * 1000,
        # "Today" and every time on the home page: the operator's configured zone.
        "time_zone": settings.PANEL_TIME_ZONE,
        "time_zone_label": zone_label(zone_or_panel(settings.PANEL_TIME_ZONE)),
        "urls": {
            "dashboard": reverse("panel:dashboard"),
            "charts": reverse("panel:charts"),
            "reports": reverse("panel:reports"),
        },
    }


@register.simple_tag(name="panel_texts")
def panel_texts() -> dict[str, Any]:
    """The words panel.js writes into the live pages, in the request's language.

    The keyed ones are the dashboard's; the ones keyed by their English text are what panel.js
    passes to t() (the admin's JavaScript catalog knows none of them), and "plurals" gives
    nt() the one and the many form of each message that counts.
    """
    return {
        "updated": gettext("Live: updated"),
        "stale": gettext("Not updating: the server does not answer (or your login expired)"),
        "no_connectors": gettext("No connectors yet."),
        "no_alerts": gettext("No alerts. The network is healthy."),
        "no_sessions": gettext("No session is charging."),
        # "%s" is the number of sessions not shown.
        "more": gettext("and %s more"),
        # Relative times, the same words as the server's relative_text.
        "just now": gettext("just now"),
        "in a moment": gettext("in a moment"),
        "in %(time)s": gettext("in %(time)s"),
        "%(time)s ago": gettext("%(time)s ago"),
        # The station page's live parts.
        "Online": gettext("Online"),
        "Offline": gettext("Offline"),
        "vendor code": gettext("vendor code"),
        "session": gettext("session"),
        "Stop": gettext("Stop"),
        "Unlock": gettext("Unlock"),
        "Make available": gettext("Make available"),
        "Make unavailable": gettext("Make unavailable"),
        "waiting…": gettext("waiting…"),
        "No commands sent yet.": gettext("No commands sent yet."),
        "%(action)s queued (#%(id)s); its result appears below.": gettext(
            "%(action)s queued (#%(id)s); its result appears below."
        ),
        "Not sent: %(error)s": gettext("Not sent: %(error)s"),
        # English, Dutch and German have the same two forms: one, and every other number.
        "plurals": {
            one: [ngettext(one, many, 1), ngettext(one, many, 2)]
            for one, many in (
                ("%(n)d min", "%(n)d min"),
                ("%(n)d hour", "%(n)d hours"),
                ("%(n)d day", "%(n)d days"),
            )
        },
    }


@register.filter
def panel_number(value: Any) -> str:
    """A JSON-ready number string as the active language writes it."""
    return display_number(value)


@register.filter
def panel_money(totals: Any) -> str:
    return display_money(totals)


@register.simple_tag
def panel_app_list(app_list: list[dict[str, Any]], user: Any) -> list[dict[str, Any]]:
    return menus.order_app_list(app_list, user)


@register.simple_tag
def station_panel(station: Any, request: Any) -> dict[str, Any]:
    """The live parts of the station page: connectors, sessions, commands, charts."""
    user = request.user
    tz = zone_or_panel(station.location.time_zone if station.location else None)
    recent = station_recent_sessions(station=station)
    messages_url = admin_url("stations_ocppmessage_changelist")
    return {
        "live": dashboard.station_live(station=station),
        "tz": tz,
        "zone_label": zone_label(tz),
        "recent_sessions": recent,
        "connections": station.connections.all()[:15],
        "messages": station_recent_messages(station=station),
        "messages_url": messages_url and f"{messages_url}?station__id__exact={station.pk}",
        "can_command": command_permissions.can_send_some(user) and bool(station.protocol),
        # Which of the page's commands this user may send (Support: the driver-help ones).
        "can": {
            "any": user.has_perm(command_permissions.SEND_ANY),
            "trigger_status": command_permissions.can_send(
                user, "trigger_message", {"message": "StatusNotification"}
            ),
            "unlock": command_permissions.can_send(user, "unlock_connector"),
            "remote_stop": command_permissions.can_send(user, "remote_stop"),
        },
        "can_see_sessions": user.has_perm("charging.view_chargingsession"),
        "verbs": sorted(QUICK_COMMANDS),
        "all_commands_url": admin_url("commands_command_changelist")
        and f"{admin_url('commands_command_changelist')}?station__id__exact={station.pk}",
        "refresh_ms": settings.PANEL_REFRESH_SECONDS * 1000,
        "now": timezone.now(),
        "urls": {
            "live": reverse("panel:station-live", args=[station.pk]),
            "timeline": reverse("panel:station-timeline", args=[station.pk]),
            "command": reverse("panel:station-command", args=[station.pk]),
        },
    }


@register.simple_tag
def report_cell(row: dict[str, Any], column: str, link_column: str = "", link_key: str = "") -> str:
    """One cell of a report table, linked to the admin page of its object when there is one."""
    value = row.get(column, "")
    if column == link_column and link_key and row.get(link_key):
        return format_html('<a href="{}">{}</a>', row[link_key], value)
    return conditional_escape(value)


def _moment(value: Any) -> Any:
    """A datetime, or the ISO 8601 text the selectors hand out, as a datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


@register.simple_tag
def local_time(value: Any, tz: Any, seconds: bool = False) -> str:
    """A moment in the page's zone, the one date format: "2026-12-01 14:03 CET", the zone's
    name on hover."""
    moment = _moment(value)
    if moment is None:
        return "—"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        iso(moment),
        local_text(moment, tz, seconds=True, named=True),
        local_text(moment, tz, seconds=seconds),
    )


@register.simple_tag
def time_ago(value: Any, tz: Any) -> str:
    """A moment as people prefer it, "3 min ago", the absolute time (zone named) on hover;
    the page's script keeps it current."""
    moment = _moment(value)
    if moment is None:
        return "—"
    return format_html(
        '<time datetime="{}" title="{}" data-relative>{}</time>',
        iso(moment),
        local_text(moment, tz, seconds=True, named=True),
        relative_text(moment),
    )


@register.simple_tag
def money(amount: Any, currency: str) -> str:
    """An amount with its currency, rounded to the currency's minor unit: "0.70 EUR"."""
    if amount is None or amount == "":
        return "—"
    return money_text(Decimal(str(amount)), currency)


@register.simple_tag
def session_panel(session: Any, request: Any) -> dict[str, Any]:
    """Everything the session page shows above the recorded fields."""
    return session_page.session_page(session=session, user=request.user)
