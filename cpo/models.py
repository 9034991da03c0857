from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils import timezone
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


class ApiToken(models.Model):
    """A user's own API token (cpo.api_tokens): it acts with exactly its user's permissions.

    The secret is shown once, when the token is made; only its SHA-256 is stored (the secret is
    32 random bytes, so a fast hash is enough: there is nothing to guess from it). `prefix`
    names the token in lists and in the failure throttle without revealing the secret.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'exports'.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_from = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    def is_active(self, *, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and self.expires_at > now
