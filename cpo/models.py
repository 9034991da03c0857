from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _

from cpo.lib.i18n import validate_language


class User(AbstractUser):
    """A staff member or API integrator. Roles are the groups Operators, Finance and Support."""

    # A validator, not choices: adding a language to LANGUAGES needs no migration.
    language = models.CharField(
        _("language"),
        max_length=8,
        blank=True,
        validators=[validate_language],
        help_text=_("The panel's language for this user; empty: the browser's."),
    )

    class Meta(AbstractUser.Meta):  # type: ignore[name-defined]  # django-stubs declares no AbstractUser.Meta
        swappable = "AUTH_USER_MODEL"

    def has_role(self, role: str) -> bool:
        return self.is_superuser or self.groups.filter(name=role).exists()
