from __future__ import annotations

from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A staff member or API integrator. Roles are the groups Operators, Finance and Support."""

    class Meta(AbstractUser.Meta):  # type: ignore[name-defined]  # django-stubs declares no AbstractUser.Meta
        swappable = "AUTH_USER_MODEL"

    def has_role(self, role: str) -> bool:
        return self.is_superuser or self.groups.filter(name=role).exists()
