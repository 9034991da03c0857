"""What each staff role finds first in the operator panel: dashboard widgets, quick links and
the order of the admin's app list.

Permissions still decide what anyone may open or do (cpo/roles.py); this module only decides
what comes first, so each role finds its daily work in one or two clicks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from cpo.lib.formatting import admin_url
from cpo.roles import FINANCE, OPERATORS, SUPPORT

ADMIN = "Admin"

# Widgets of the home page, in display order.
WIDGETS = {
    ADMIN: ("network", "alerts", "live_sessions", "money", "energy_chart", "revenue_chart"),
    OPERATORS: ("network", "alerts", "live_sessions", "energy_chart", "money", "revenue_chart"),
    SUPPORT: ("network", "alerts", "live_sessions", "energy_chart"),
    FINANCE: ("money", "revenue_chart", "energy_chart", "network"),
}
# App labels in the order each role wants them; apps not named keep Django's order after these.
APP_ORDER = {
    ADMIN: ("stations", "charging", "tariffs", "billing", "roaming", "cpo"),
    OPERATORS: ("stations", "charging", "tariffs", "roaming", "billing"),
    SUPPORT: ("charging", "stations", "tariffs", "billing"),
    FINANCE: ("billing", "charging", "tariffs", "stations"),
}


def panel_role(user: Any) -> str:
    """The role whose panel a user sees; superusers see everything, in the operators' order."""
    if user.is_superuser:
        return ADMIN
    names = {group.name for group in user.groups.all()}
    for role in (OPERATORS, FINANCE, SUPPORT):
        if role in names:
            return role
    return SUPPORT


def role_widgets(user: Any) -> tuple[str, ...]:
    return WIDGETS[panel_role(user)]


def order_app_list(app_list: list[dict[str, Any]], user: Any) -> list[dict[str, Any]]:
    order = APP_ORDER[panel_role(user)]
    rank = {label: index for index, label in enumerate(order)}
    return sorted(app_list, key=lambda app: rank.get(app["app_label"], len(order)))


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    hint: str = ""


def _changelist(user: Any, app: str, model: str, label: str, query: str = "", hint: str = ""):
    if not user.has_perm(f"{app}.view_{model}"):
        return None
    url = admin_url(f"{app}_{model}_changelist")
    return Link(label, f"{url}{query}", hint) if url else None


def quick_links(user: Any) -> list[Link]:
    """The role's everyday destinations; a link appears only when the page exists and the
    user may see it."""
    role = panel_role(user)
    reports = [
        Link("Uptime report", reverse("panel:report-uptime"), "usable vs faulted/offline"),
        Link("Energy & revenue per site", reverse("panel:report-energy-revenue"), "per month"),
        Link("Sessions per token", reverse("panel:report-sessions-per-token")),
    ]
    network = [
        _changelist(user, "stations", "chargingstation", "Stations"),
        _changelist(user, "stations", "chargingstation", "Offline stations", "?online=no"),
        _changelist(user, "stations", "connector", "Faulted connectors", "?status__exact=Faulted"),
        _changelist(user, "charging", "chargingsession", "Live sessions", "?live=live"),
        _changelist(user, "commands", "command", "Commands"),
        _changelist(user, "commands", "job", "Jobs", hint="firmware, diagnostics"),
    ]
    support = [
        _changelist(user, "charging", "idtoken", "Tokens", hint="search by uid or card number"),
        _changelist(user, "charging", "chargingsession", "Sessions"),
        _changelist(user, "charging", "authorizationdecision", "Authorization decisions"),
        _changelist(user, "stations", "chargingstation", "Stations"),
    ]
    finance = [
        _changelist(
            user, "billing", "sessionreview", "Sessions to review", hint="no tariff, held, failed"
        ),
        _changelist(user, "billing", "invoice", "Invoices", hint="export CSV, PDF"),
        _changelist(user, "billing", "cdr", "CDRs"),
        _changelist(user, "billing", "billingperiod", "Billing periods"),
        _changelist(user, "charging", "customeraccount", "Accounts"),
    ]
    chosen = {
        ADMIN: network + finance,
        OPERATORS: network,
        SUPPORT: support,
        FINANCE: finance,
    }[role]
    links = [link for link in chosen if link is not None]
    own = [Link("Your API tokens", reverse("panel:api-tokens"), "for scripts and integrations")]
    if role == FINANCE:
        return links + [reports[1], reports[2], reports[0]] + own
    return links + reports + own
