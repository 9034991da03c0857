"""Staff roles: least privileges per group."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group


@pytest.mark.django_db
def test_roles_have_least_privileges():
    operators = set(
        Group.objects.get(name="Operators").permissions.values_list("codename", flat=True)
    )
    finance = set(Group.objects.get(name="Finance").permissions.values_list("codename", flat=True))
    support = Group.objects.get(name="Support").permissions.values_list("codename", flat=True)

    assert "change_chargingstation" in operators
    assert "change_idtoken" in operators
    assert all(codename.startswith("view_") for codename in support)
    assert "view_chargingstation" in support
    assert "change_chargingstation" not in finance
    assert "view_chargingsession" in finance
    # Operators never touch money records beyond reading them.
    assert not {c for c in operators if c.startswith(("issue_", "credit_", "export_"))}
