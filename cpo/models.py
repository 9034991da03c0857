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


class LoginThrottle(models.Model):
    """Failed panel logins of one username or one source address (`cpo.login_limits`)."""

    class Scope(models.TextChoices):
        USERNAME = "username", "Username"
        ADDRESS = "address", "Source address"

    scope = models.CharField(max_length=8, choices=Scope.choices)
    key = models.CharField(max_length=255)
    failures = models.PositiveIntegerField(default=0)
    # How many times this key was locked since its last success or lift: each lockout lasts
    # twice as long as the one before.
    lockouts = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="loginthrottle_unique_key")
        ]
        ordering = ["-last_failure_at"]

    def __str__(self) -> str:
        return f"{self.get_scope_display()} {self.key}"
