"""Every model change has its migration: a model edited without one would be applied to no
database (and `migrate` on a deployment would silently leave the schema behind)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration() -> None:
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:  # makemigrations --check exits 1 when a migration is missing
        pytest.fail(f"a model change has no migration:\n{out.getvalue()}", pytrace=False)
        raise AssertionError from exc
