"""Facts the charging domain announces to higher apps (tariffs, billing, roaming).

Receivers enqueue Celery work with transaction.on_commit; they hold no business logic.
"""

from __future__ import annotations

from django.dispatch import Signal

# session_started(sender=ChargingSession, session_id=int)
session_started = Signal()
# session_ended(sender=ChargingSession, session_id=int): the charger reported the stop.
session_ended = Signal()
# id_token_changed(sender=IdToken, token_ids=list[int]): local authorization lists may differ.
id_token_changed = Signal()
