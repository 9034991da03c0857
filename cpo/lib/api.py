"""Shared pieces of the REST API: the domain error, the one error shape, pagination, the
permission rule of every view, and the throttles.

Every error of the API, old routes and /api/v1/ alike, has one shape:

    {"errors": [{"field": "elements.0.price_components.1.price", "code": "invalid",
                 "message": "A valid number is required."}]}

`field` is the dotted path of the input that was refused (list items by index), or null when
the error is about the request as a whole (authentication, permission, throttling, not found,
a domain rule).

The throttles are in cpo.lib.throttles.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import exceptions, filters, generics, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler


class ApplicationError(Exception):
    """A domain rule refused the request; `message` is safe to show to the caller."""

    def __init__(
        self,
        message: str,
        extra: dict[str, Any] | None = None,
        status: int = 400,
        code: str = "refused",
    ):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        self.status = status
        self.code = code


# --- the one error shape ------------------------------------------------------------------------


def _is_leaf(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"message", "code"}


def error_items(details: Any, path: str | None = None) -> Iterator[dict[str, Any]]:
    """DRF's full error details (nested dicts and lists of {message, code}) as flat items."""
    if _is_leaf(details):
        yield {"field": path, "code": str(details["code"]), "message": str(details["message"])}
    elif isinstance(details, dict):
        for key, value in details.items():
            if key in (api_settings.NON_FIELD_ERRORS_KEY, "detail"):
                yield from error_items(value, path)
            else:
                yield from error_items(value, f"{path}.{key}" if path else str(key))
    elif isinstance(details, list):
        for index, item in enumerate(details):
            if isinstance(item, dict) and not _is_leaf(item):
                # One item of a list of objects (many=True): its errors, under its index.
                yield from error_items(item, f"{path}.{index}" if path else str(index))
            else:
                yield from error_items(item, path)
    else:
        yield {"field": path, "code": "invalid", "message": str(details)}


def _django_validation_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    if hasattr(exc, "error_dict"):
        # A model's rule over several fields (NON_FIELD_ERRORS) is about no one field.
        detail: Any = {
            (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): [
                serializers.ErrorDetail(str(m), code=error.code or "invalid")
                for error in errors
                for m in error.messages
            ]
            for field, errors in exc.error_dict.items()
        }
    else:
        detail = [
            serializers.ErrorDetail(str(m), code=error.code or "invalid")
            for error in exc.error_list
            for m in error.messages
        ]
    return exceptions.ValidationError(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = _django_validation_error(exc)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, ApplicationError):
        item = {"field": exc.extra.get("field"), "code": exc.code, "message": exc.message}
        return Response({"errors": [item]}, status=exc.status)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    response.data = {"errors": list(error_items(exc.get_full_details()))}
    return response


ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error of the API has this shape.",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "code", "message"],
                "properties": {
                    "field": {
                        "type": "string",
                        "nullable": True,
                        "description": "Dotted path of the refused input (list items by "
                        "index); null when the error is about the request as a whole",
                    },
                    "code": {
                        "type": "string",
                        "description": "Machine-readable: required, invalid, not_found, "
                        "not_authenticated, authentication_failed, permission_denied, "
                        "throttled, ...",
                    },
                    "message": {"type": "string"},
                },
            },
        }
    },
}
ERROR_STATUSES = {
    "400": "Invalid input, or a domain rule refused it",
    "401": "No credentials, or a token that is invalid, expired or revoked",
    "403": "The user lacks the permission",
    "404": "Not found",
    "429": "Too many requests (or failed token uses); see the Retry-After header",
}


def error_responses_hook(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing: the one error shape, on every operation."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_STATUSES.items():
                responses.setdefault(code, {"description": description, "content": ref})
    return result


# --- permissions --------------------------------------------------------------------------------


class HasModelPermissions(BasePermission):
    """The user holds every permission the view requires for the request's method.

    `required_permissions` is a tuple of permissions, or a {METHOD: tuple} mapping for views
    that read and write on one URL. A method without an entry is refused.
    """

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        method = (request.method or "").lower()
        if method not in ("head", "options") and not hasattr(view, method):
            return True  # the view answers 405 Method Not Allowed
        required = getattr(view, "required_permissions", None)
        if isinstance(required, dict):
            required = required.get("GET" if method in ("head", "options") else method.upper())
        if required is None:
            return False
        return bool(user.has_perms(required))


# --- pagination ---------------------------------------------------------------------------------


class StableCursorPagination(CursorPagination):
    """Cursor pagination: a page boundary is a position in the ordering, not an offset, so rows
    inserted while a client walks the pages neither repeat nor vanish from its walk.

    The position is exact when the first ordering field is unique (every list's default: id,
    or identity for stations); on a non-unique one (`?ordering=name`) DRF keeps an offset among
    rows of equal value."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"


# --- the bases of the v1 views -------------------------------------------------------------------


class V1ListApi(generics.ListAPIView):
    """A list with django-filter filters (`filterset_class`), `?ordering=` (`ordering_fields`,
    default `ordering`) and cursor pages; `required_permissions` per method."""

    permission_classes = [HasModelPermissions]
    required_permissions: Any = ()
    pagination_class = StableCursorPagination
    filter_backends = [DjangoFilterBackend, filters.OrderingFilter]


class V1DetailApi(generics.RetrieveAPIView):
    permission_classes = [HasModelPermissions]
    required_permissions: Any = ()
