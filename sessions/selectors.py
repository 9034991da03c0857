"""Non-trivial reads of the charging domain: token, driver and account searches, sessions."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from sessions.models import (
    AuthorizationDecision,
    ChargingSession,
    CustomerAccount,
    Driver,
    IdToken,
    normalize_uid,
)


def token_search_q(query: str) -> Q:
    """A token by uid (any case, as 2.0.1 and 1.6 compare them) or by its printed number."""
    query = query.strip()
    return Q(uid_normalized__contains=normalize_uid(query)) | Q(visual_number__icontains=query)


def token_list(*, filters: dict[str, Any] | None = None) -> QuerySet[IdToken]:
    """Tokens for the API and exports. Filters: q (uid or visual number), blocked, type,
    account, driver, group."""
    filters = filters or {}
    tokens = IdToken.objects.select_related("account", "driver", "group").order_by("uid")
    if filters.get("q"):
        tokens = tokens.filter(token_search_q(filters["q"]))
    if filters.get("blocked") is not None:
        tokens = tokens.filter(blocked=filters["blocked"])
    if filters.get("type"):
        tokens = tokens.filter(type=filters["type"])
    for relation in ("account", "driver", "group"):
        if filters.get(relation):
            tokens = tokens.filter(**{f"{relation}_id": filters[relation]})
    return tokens


def driver_list(*, filters: dict[str, Any] | None = None) -> QuerySet[Driver]:
    """Drivers. Filters: q (name, reference, e-mail, or a uid / visual number of their
    tokens), account."""
    filters = filters or {}
    drivers = Driver.objects.select_related("account").annotate(token_count=Count("tokens"))
    if filters.get("q"):
        query = filters["q"].strip()
        drivers = drivers.filter(
            Q(name__icontains=query)
            | Q(reference__iexact=query)
            | Q(email__icontains=query)
            | Q(pk__in=IdToken.objects.filter(token_search_q(query)).values("driver_id"))
        )
    if filters.get("account"):
        drivers = drivers.filter(account_id=filters["account"])
    return drivers.order_by("name", "pk")


def account_list(*, filters: dict[str, Any] | None = None) -> QuerySet[CustomerAccount]:
    """Accounts. Filters: q (name, legal name, reference, VAT id), kind, is_active."""
    filters = filters or {}
    accounts = CustomerAccount.objects.all()
    if filters.get("q"):
        query = filters["q"].strip()
        accounts = accounts.filter(
            Q(name__icontains=query)
            | Q(legal_name__icontains=query)
            | Q(reference__iexact=query)
            | Q(vat_id__iexact=query)
        )
    if filters.get("kind"):
        accounts = accounts.filter(kind=filters["kind"])
    if filters.get("is_active") is not None:
        accounts = accounts.filter(is_active=filters["is_active"])
    return accounts.order_by("name", "pk")


def driver_sessions(*, driver: Driver) -> QuerySet[ChargingSession]:
    """A driver's sessions, newest first: those started with any of their tokens."""
    return (
        ChargingSession.objects.filter(id_token__driver=driver)
        .select_related("station", "id_token")
        .order_by("-started_at")
    )


def token_decisions(*, token: IdToken, limit: int = 50) -> list[AuthorizationDecision]:
    return list(
        AuthorizationDecision.objects.filter(id_token=token)
        .select_related("station")
        .order_by("-created_at")[:limit]
    )
