"""Facts billing announces to higher apps (roaming sends CDRs to eMSPs).

Sent INSIDE the transaction of the change, for receivers that write outbox rows with it;
receivers must be quick and call nobody.
"""

from __future__ import annotations

from django.dispatch import Signal

# cdr_created(sender=Cdr, cdr=Cdr): a session was rated into a CDR, or a CDR was credited
# (the credit CDR; a re-rate sends the credit, then the new revision).
cdr_created = Signal()
