"""Facts the tariffs domain announces to higher apps (roaming pushes tariffs to partners).

Sent INSIDE the transaction of the change, for receivers that write outbox rows with it;
receivers must be quick and call nobody.
"""

from __future__ import annotations

from django.dispatch import Signal

# tariff_version_published(sender=TariffVersion, version=TariffVersion): a new version of a
# tariff was published (in force now, or scheduled).
tariff_version_published = Signal()
