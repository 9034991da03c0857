"""Token, driver and account services: validation, and the announcements the local-list sync
depends on."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from sessions import services
from sessions.models import AuthorizationDecision, IdToken

pytestmark = pytest.mark.django_db


def test_every_local_list_relevant_change_is_announced_after_commit(
    account: Any,
    token_changes: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        group = services.id_token_create(uid="0A0B0C0D", account=account)
        member = services.id_token_create(uid="04C0FFEE", group=group)
    assert token_changes.calls == [[group.pk], [member.pk]]
    assert member.account == account  # no account given: the group's pays

    def announced(action: Any) -> list[list[int]]:
        token_changes.calls.clear()
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            action()
        return token_changes.calls if callbacks else []

    later = timezone.now() + timedelta(days=10)
    assert announced(
        lambda: services.id_token_update(token=member, data={"valid_until": later})
    ) == [[member.pk]]
    assert (
        announced(lambda: services.id_token_update(token=member, data={"visual_number": "printed"}))
        == []
    )
    # A group's status travels with its members' entries.
    assert announced(lambda: services.id_token_block(token=group, reason="fraud")) == [
        sorted([group.pk, member.pk])
    ]
    assert announced(lambda: services.id_token_block(token=group)) == []  # already blocked
    assert announced(lambda: services.id_token_unblock(token=group)) == [
        sorted([group.pk, member.pk])
    ]
    assert (
        announced(
            lambda: services.id_token_set_restrictions(token=member, locations=[], stations=[])
        )
        == []
    )
    group_id = group.pk
    assert announced(lambda: services.id_token_delete(token=group)) == [
        sorted([group_id, member.pk])
    ]
    member.refresh_from_db()
    assert member.group is None


def test_nothing_is_announced_when_the_transaction_rolls_back(
    account: Any,
    token_changes: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with pytest.raises(ValidationError):
            services.id_token_create(
                uid="04A1B2C3",
                account=account,
                valid_until=timezone.now(),
                valid_from=timezone.now() + timedelta(days=1),
            )
    assert callbacks == []
    assert not IdToken.objects.exists()


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"uid": "04A1B2C"}, "uid"),  # odd number of hex digits: not whole bytes
        ({"uid": "04A1B2C3D4E5F60718293A"}, "uid"),  # longer than 10 bytes
        ({"uid": "E004015012345678", "type": "ISO15693"}, None),
        ({"uid": "E0040150", "type": "ISO15693"}, "uid"),
        ({"uid": "NL-ACM-C12345678-X", "type": "eMAID"}, None),
        # IdToken.clean names the field (the check constraint backs it in the database).
        ({"uid": "04A1B2C3", "max_concurrent_sessions": 0}, "max_concurrent_sessions"),
        ({"uid": "04A1B2C3", "budget_cost": Decimal("-1")}, "budget_cost"),
        ({"uid": "04A1B2C3", "budget_period": "year"}, "budget_period"),
    ],
)
def test_token_validation(account: Any, fields: dict[str, Any], error_field: str | None) -> None:
    if error_field is None:
        services.id_token_create(account=account, **fields)
        return
    with pytest.raises(ValidationError) as raised:
        services.id_token_create(account=account, **fields)
    assert error_field in raised.value.message_dict


def test_groups_are_one_level_and_drivers_pay_from_their_account(account: Any) -> None:
    other = services.account_create(name="Other", reference="OTHER")
    group = services.id_token_create(uid="0A0B0C0D", account=account)
    member = services.id_token_create(uid="04C0FFEE", group=group)
    with pytest.raises(ValidationError, match="belongs to a group itself"):
        services.id_token_create(uid="04C0FFE2", group=member)
    loner = services.id_token_create(uid="04E0E0E0", account=account)
    with pytest.raises(ValidationError, match="group of other tokens"):
        services.id_token_update(token=group, data={"group": loner})

    long_group = services.id_token_create(uid="FLEET-GROUP-0123456789", type="Central")
    with pytest.raises(ValidationError, match="cannot be sent to OCPP 1.6"):
        services.id_token_create(uid="04E0E0E1", group=long_group)

    driver = services.driver_create(account=account, name="Dana")
    with pytest.raises(ValidationError, match="another account"):
        services.id_token_create(uid="04D0D0D0", driver=driver, account=other)
    card = services.id_token_create(uid="04D0D0D0", driver=driver)
    assert card.account == account
    services.driver_update(driver=driver, data={"account": other})
    card.refresh_from_db()
    assert card.account == other


def test_decisions_are_recorded_with_reasons(account: Any) -> None:
    services.id_token_create(
        uid="04A1B2C3", account=account, blocked=True, blocked_reason="card reported stolen"
    )
    for uid in ("04a1b2c3", "0000FFFF"):
        services.authorization_decide(uid=uid, context="Authorize")
    decisions = list(
        AuthorizationDecision.objects.order_by("pk").values_list(
            "uid", "id_token__uid", "status", "reason"
        )
    )
    assert decisions == [
        ("04a1b2c3", "04A1B2C3", "Blocked", "token blocked: card reported stolen"),
        ("0000FFFF", None, "Invalid", "unknown token"),
    ]


def test_expiry_returned_is_the_earlier_of_token_and_group(account: Any) -> None:
    soon = timezone.now() + timedelta(days=2)
    later = timezone.now() + timedelta(days=20)
    group = services.id_token_create(uid="0A0B0C0D", account=account, valid_until=soon)
    services.id_token_create(uid="04C0FFEE", group=group, valid_until=later)
    result = services.authorization_decide(uid="04C0FFEE", context="Authorize")
    assert result.accepted
    assert result.expiry == soon
    assert (result.group_uid, result.group_type) == ("0A0B0C0D", "ISO14443")
