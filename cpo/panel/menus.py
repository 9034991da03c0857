"""What each staff role finds first in the operator panel: dashboard widgets, quick links and
the order of the admin's app list.

Permissions still decide what anyone may open or do (cpo/roles.py); this module only decides
what comes first, so each role finds its daily work in one or two clicks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from cpo.lib.formatting import admin_url
from cpo.roles import FINANCE, OPERATORS, SUPPORT

ADMIN = "Admin"
# The roles' names as the panel shows them (the groups keep their English names).
ROLE_LABELS = {
    ADMIN: gettext_lazy("Admin"),
    OPERATORS: gettext_lazy("Operators"),
    FINANCE: gettext_lazy("Finance"),
    SUPPORT: gettext_lazy("Support"),
}

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
        Link(_("Uptime report"), reverse("panel:report-uptime"), _("usable vs faulted/offline")),
        Link(
            _("Energy & revenue per site"), reverse("panel:report-energy-revenue"), _("per month")
        ),
        Link(_("Sessions per token"), reverse("panel:report-sessions-per-token")),
    ]
    sites_map = Link(_("Map of sites"), reverse("panel:map"), _("status per site"))
    network = [
        _changelist(user, "stations", "chargingstation", _("Stations")),
        sites_map,
        _changelist(user, "stations", "chargingstation", _("Offline stations"), "?online=no"),
        _changelist(
            user, "stations", "connector", _("Faulted connectors"), "?status__exact=Faulted"
        ),
        _changelist(user, "charging", "chargingsession", _("Live sessions"), "?live=live"),
        _changelist(user, "commands", "command", _("Commands")),
        _changelist(user, "commands", "job", _("Jobs"), hint=_("firmware, diagnostics")),
    ]
    support = [
        _changelist(
            user, "charging", "idtoken", _("Tokens"), hint=_("search by uid or card number")
        ),
        _changelist(user, "charging", "chargingsession", _("Sessions")),
        _changelist(user, "charging", "authorizationdecision", _("Authorization decisions")),
        _changelist(user, "stations", "chargingstation", _("Stations")),
        sites_map,
    ]
    finance = [
        _changelist(
            user,
            "billing",
            "sessionreview",
            _("Sessions to review"),
            hint=_("no tariff, held, failed"),
        ),
        _changelist(user, "billing", "invoice", _("Invoices"), hint=_("export CSV, PDF")),
        _changelist(user, "billing", "cdr", _("CDRs")),
        _changelist(user, "billing", "billingperiod", _("Billing periods")),
        _changelist(user, "charging", "customeraccount", _("Accounts")),
    ]
    chosen = {
        ADMIN: network + finance,
        OPERATORS: network,
        SUPPORT: support,
        FINANCE: finance,
    }[role]
    links = [link for link in chosen if link is not None]
    if role == FINANCE:
        return links + [reports[1], reports[2], reports[0]]
    return links + reports
