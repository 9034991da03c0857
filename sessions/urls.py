"""REST routes of the charging domain, included at /api/."""

from __future__ import annotations

from django.urls import path

from sessions import apis

urlpatterns = [
    path("tokens/", apis.TokenListApi.as_view(), name="token-list"),
    path("tokens/create/", apis.TokenCreateApi.as_view(), name="token-create"),
    path("tokens/<int:token_id>/", apis.TokenDetailApi.as_view(), name="token-detail"),
    path("tokens/<int:token_id>/update/", apis.TokenUpdateApi.as_view(), name="token-update"),
    path("tokens/<int:token_id>/delete/", apis.TokenDeleteApi.as_view(), name="token-delete"),
    path("tokens/<int:token_id>/block/", apis.TokenBlockApi.as_view(), name="token-block"),
    path("tokens/<int:token_id>/unblock/", apis.TokenUnblockApi.as_view(), name="token-unblock"),
    path("drivers/", apis.DriverListApi.as_view(), name="driver-list"),
    path("drivers/create/", apis.DriverCreateApi.as_view(), name="driver-create"),
    path("drivers/<int:driver_id>/", apis.DriverDetailApi.as_view(), name="driver-detail"),
    path("drivers/<int:driver_id>/update/", apis.DriverUpdateApi.as_view(), name="driver-update"),
    path(
        "drivers/<int:driver_id>/sessions/",
        apis.DriverSessionsApi.as_view(),
        name="driver-sessions",
    ),
    path("sessions/", apis.SessionListApi.as_view(), name="session-list"),
    path("sessions/<int:session_id>/", apis.SessionDetailApi.as_view(), name="session-detail"),
    path("accounts/", apis.AccountListApi.as_view(), name="account-list"),
    path("accounts/create/", apis.AccountCreateApi.as_view(), name="account-create"),
    path("accounts/<int:account_id>/", apis.AccountDetailApi.as_view(), name="account-detail"),
    path(
        "accounts/<int:account_id>/update/", apis.AccountUpdateApi.as_view(), name="account-update"
    ),
]
