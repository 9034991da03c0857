"""Staff roles as Django groups, each with the least privileges its work needs.

The groups are created by a data migration; their permissions are re-synced after every
`migrate`, so that models added by later migrations join the roles without a manual step.

- Operators run the network: stations, sessions, tokens, drivers, tariffs, commands, jobs,
  incidents (they acknowledge them) and remediation playbooks.
  They can read CDRs and invoices, but never issue, credit or export them.
- Finance closes periods, issues invoices and credit notes, reviews sessions, exports, edits
  billing profiles; reads the network.
- Support reads everything operators see, and helps a driver at the charger: asks a station
  for its status, unlocks a connector, remote-stops a session; nothing else that changes data.

What each role may do in the panel and the API is the README's "Roles" table, which
tests/cpo/test_roles.py reads and checks against every admin action and URL.
"""

from __future__ import annotations

from typing import Any

OPERATORS = "Operators"
FINANCE = "Finance"
SUPPORT = "Support"
ROLES = (OPERATORS, FINANCE, SUPPORT)

# "outbox": webhook endpoints and the outbox's messages, which Operators manage (redeliver
# dead letters) and the others read.
NETWORK_APPS = (
    "stations",
    "commands",
    "monitoring",
    "energy",
    "charging",
    "tariffs",
    "roaming",
    "outbox",
)
FINANCE_APPS = ("billing",)
# The billing models Finance edits as rows; every other billing record is written by services
# (issue, credit, close, review), through permissions of their own.
FINANCE_EDITS = {"billingprofile"}
# The driver-help commands (stations.commands.permissions.DRIVER_HELP), as (app, codename).
SUPPORT_COMMANDS = {
    ("stations", "trigger_status"),
    ("stations", "unlock_connector"),
    ("stations", "remote_stop"),
}


def _codenames_for(role: str, permissions: list[Any]) -> set[int]:
    chosen: set[int] = set()
    for perm in permissions:
        app_label = perm.content_type.app_label
        action = perm.codename.split("_", 1)[0]
        if role == SUPPORT:
            if app_label in NETWORK_APPS + FINANCE_APPS and action == "view":
                chosen.add(perm.pk)
            elif (app_label, perm.codename) in SUPPORT_COMMANDS:
                chosen.add(perm.pk)
        elif role == OPERATORS:
            if app_label in NETWORK_APPS and action in {"view", "add", "change", "delete"}:
                chosen.add(perm.pk)
            elif app_label in NETWORK_APPS and action not in {"view", "add", "change", "delete"}:
                # Custom operational permissions (send commands, manage jobs, ...).
                if not perm.codename.startswith(("issue_", "credit_", "export_")):
                    chosen.add(perm.pk)
            elif app_label in FINANCE_APPS and action == "view":
                chosen.add(perm.pk)
        elif role == FINANCE:
            if app_label in FINANCE_APPS and (
                action not in {"add", "change", "delete"}
                or perm.content_type.model in FINANCE_EDITS
            ):
                chosen.add(perm.pk)
            elif app_label in NETWORK_APPS and action == "view":
                chosen.add(perm.pk)
            elif perm.codename.startswith("export_"):
                chosen.add(perm.pk)
    return chosen


def roles_sync(*, group_model: Any, permission_model: Any) -> None:
    """Create the role groups when missing and set their permissions to exactly the role's."""
    permissions = list(permission_model.objects.select_related("content_type"))
    for role in ROLES:
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.set(_codenames_for(role, permissions))


def roles_sync_on_migrate(sender: Any, **kwargs: Any) -> None:
    # post_migrate fires once per app; the last app of INSTALLED_APPS sees every permission.
    if getattr(sender, "name", None) != "roaming":
        return
    from django.contrib.auth.models import Group, Permission

    roles_sync(group_model=Group, permission_model=Permission)
