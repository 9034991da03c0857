"""The reports' menu of the panel: (label, URL name) of every report page."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

REPORTS = [
    (_("Uptime per station and connector"), "panel:report-uptime"),
    (_("Uptime figures: contract SLA, NEVI, UK"), "panel:report-uptime-figures"),
    (_("Energy and revenue per site and month"), "panel:report-energy-revenue"),
    (_("Sessions per token"), "panel:report-sessions-per-token"),
]
