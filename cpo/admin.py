from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from cpo.login_limits import lockout_message, login_locked_until, login_throttle_lift
from cpo.models import LoginThrottle, User


class LimitedAdminAuthenticationForm(AdminAuthenticationForm):
    """The panel's login form, saying so when the username or the address is locked
    (cpo.login_limits) instead of "wrong password"."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        until = login_locked_until(username=username, request=self.request)
        if until is not None:
            # Counted like any refused login: trying on while locked gains nothing.
            from django.contrib.auth import authenticate

            authenticate(self.request, username=username, password="")
            raise forms.ValidationError(lockout_message(until), code="locked")
        return super().clean()

    def get_invalid_login_error(self) -> forms.ValidationError:
        # The failure just counted may be the one that locks.
        until = login_locked_until(username=self.cleaned_data.get("username"), request=self.request)
        if until is not None:
            return forms.ValidationError(lockout_message(until), code="locked")
        return super().get_invalid_login_error()


admin.site.login_form = LimitedAdminAuthenticationForm


@admin.register(LoginThrottle)
class LoginThrottleAdmin(admin.ModelAdmin):
    """Failed panel logins per username and address; a superuser lifts a lockout here."""

    list_display = (
        "scope",
        "key",
        "failures",
        "lockouts",
        "locked_until",
        "state",
        "last_failure_at",
    )
    list_filter = ("scope",)
    search_fields = ("key",)
    actions = ["lift_lockouts"]
    readonly_fields = ("scope", "key", "failures", "lockouts", "locked_until", "last_failure_at")

    # Only superusers: no role holds a permission of the cpo app.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="State")
    def state(self, obj: LoginThrottle) -> str:
        if obj.locked_until and obj.locked_until > timezone.now():
            return "locked"
        return "counting"

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # lifting is the one way to remove a row
        return actions

    @admin.action(description="Lift the selected lockouts", permissions=["delete"])
    def lift_lockouts(self, request: HttpRequest, queryset: QuerySet[LoginThrottle]) -> None:
        lifted = 0
        for row in queryset:
            lifted += login_throttle_lift(scope=row.scope, key=row.key, by=str(request.user))
        self.message_user(request, f"Lifted {lifted} login limit(s).", messages.SUCCESS)


@admin.register(User)
class StaffUserAdmin(UserAdmin):
    list_display = ("username", "email", "first_name", "last_name", "is_staff", "roles")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")

    @admin.display(description="Roles")
    def roles(self, obj: User) -> str:
        return ", ".join(group.name for group in obj.groups.all())

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).prefetch_related("groups")
