"""The language of a panel request: the signed-in user's own choice (User.language) wins over
the cookie and the browser's Accept-Language that Django's LocaleMiddleware reads first."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils import translation
from django.utils.translation import gettext as _


def supported_language(code: str) -> str:
    """`code` if the panel has it, else ""."""
    return code if code in dict(settings.LANGUAGES) else ""


def validate_language(code: str) -> None:
    if code and not supported_language(code):
        raise ValidationError(
            _("%(code)s is not one of the panel's languages (%(languages)s).")
            % {"code": code, "languages": ", ".join(dict(settings.LANGUAGES))}
        )


class UserLanguageMiddleware:
    """Activate the user's language for the rest of the request (after authentication)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        language = supported_language(getattr(user, "language", "") or "")
        if language and user is not None and user.is_authenticated:
            translation.activate(language)
            request.LANGUAGE_CODE = language  # as LocaleMiddleware sets it
        return self.get_response(request)
