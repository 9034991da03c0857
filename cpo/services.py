"""Writes of the project's own model (the staff user)."""

from __future__ import annotations

from django.db import transaction

from cpo.lib.i18n import validate_language
from cpo.models import User


@transaction.atomic
def user_language_set(*, user: User, language: str) -> User:
    """Remember the panel language a user chose ("" for the browser's); refuses any other
    than LANGUAGES with a ValidationError."""
    validate_language(language)
    user.language = language
    user.save(update_fields=["language"])
    return user
