"""Facts the charging domain announces to higher apps (tariffs, billing, roaming).

Receivers enqueue Celery work with transaction.on_commit; they hold no business logic.
"""

from __future__ import annotations

from django.dispatch import Signal

# session_started(sender=ChargingSession, session_id=int, station_id=int)
session_started = Signal()
# session_ended(sender=ChargingSession, session_id=int, station_id=int): the charger reported
# the stop.
session_ended = Signal()
# session_estimated(sender=ChargingSession, session_id=int): closed on an estimate because the
# station no longer knows it; rated after CHARGING_ESTIMATE_RATING_DELAY_SECONDS unless the
# station's own stop replaces the estimate first (the charging app's receiver delays it).
session_estimated = Signal()
# id_token_changed(sender=IdToken, token_ids=list[int]): local authorization lists may differ.
id_token_changed = Signal()
# token_import_queued(sender=TokenImport, token_import_id=int): an uploaded token file to
# validate and write, or a stopped import to resume (sessions.token_import).
token_import_queued = Signal()
# session_changed(sender=ChargingSession, session=ChargingSession, event=str): sent INSIDE the
# transaction of the change ("started", "ended", "estimated"), for receivers that write outbox
# rows with it (roaming pushes sessions to eMSPs). Receivers must be quick and call nobody.
session_changed = Signal()
