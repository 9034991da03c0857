"""Facts the command queue announces; its receivers (`receivers.py`) enqueue the Celery work
that follows, after the announcing transaction commits. Services never import tasks, so the
arrows run one way: tasks -> services -> signals.
"""

from __future__ import annotations

from django.dispatch import Signal

# job_targets_changed(sender=Job, job_id=int): targets of a job were created, finished or
# failed an attempt; more may start now, or the job is done.
job_targets_changed = Signal()
# local_list_refused(sender=LocalAuthList, station_id=int): a station refused a differential
# update of its local list (VersionMismatch, Failed): it needs the whole list again.
local_list_refused = Signal()
# command_finished(sender=Command, command=Command, command_id=int, station_id=int, verb=str,
# status=str, result=str, error_code=str): a command became final (answered, refused, failed,
# timed out, expired). Sent inside the transaction that stores the outcome, so a receiver's
# writes commit with it (roaming owes a partner the result of the command it asked for);
# receivers filter on `verb` and must be cheap.
command_finished = Signal()
