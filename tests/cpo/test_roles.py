"""Staff roles: least privilege, checked against the README's "Roles" table.

The test reads the table from README.md and walks everything a role could use:

- every registered ModelAdmin: its pages (list, add, change, delete, history) requested as
  each role, and the actions it offers that role (the admin's own gate: an action not in
  `get_actions` is never run);
- every other named URL of the admin, the panel and the REST API, requested as each role with
  the methods the table lists (and, for DRF views, every method they implement);
- the command rule (which verb each role may send) for every verb, and through each of its
  three entry points (panel, admin page, API).

A URL, admin or action that the table does not list fails the test, and so does a row the
project no longer has: the table and the code cannot drift apart. "Allowed" means the request
is not refused with 403 (it may still be invalid: probes post empty forms, so nothing changes).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from stations.commands import permissions as command_permissions
from stations.commands.verbs import VERBS

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("Operators", "Finance", "Support")
MODEL_OPS = ("view", "add", "change", "delete")
# Per-model admin pages; their rights are the model rows' operations.
CRUD_SUFFIXES = ("changelist", "add", "change", "delete", "history")

pytestmark = pytest.mark.django_db


# --- the README's table ------------------------------------------------------------------------


def roles_table() -> dict[str, dict[str, set[str]]]:
    """{key: {role: words}} from the tables of the README's "### Roles" section; the key is
    the first `code` of a row, the words its cell ("✓" allowed, "—" nothing, or operations)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "\n### Roles\n" in text, "README.md has no '### Roles' section"
    section = re.split(r"\n#{1,3} ", text.split("\n### Roles\n", 1)[1], maxsplit=1)[0]
    table: dict[str, dict[str, set[str]]] = {}
    header: list[str] | None = None
    for line in section.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if set("".join(cells)) <= set("-: "):
            continue
        if header is None:
            header = cells
            assert all(role in header for role in ROLES), header
            continue
        found = re.search(r"`([^`]+)`", cells[0])
        assert found, f"README Roles row without a `key`: {line}"
        key = found.group(1)
        assert key not in table, f"README Roles lists {key} twice"
        table[key] = {role: set(cells[header.index(role)].split()) - {"—"} for role in ROLES}
    return table


TABLE = roles_table()


def allowed(key: str, role: str) -> bool:
    assert key in TABLE, f"README Roles table has no row `{key}`: add one"
    return "✓" in TABLE[key][role]


# --- the data the probes need ------------------------------------------------------------------


@pytest.fixture
def world(roles: None) -> dict[str, Any]:  # noqa: ARG001
    """Demo network and history, an issued invoice, a command, and one user per role."""
    from billing import services as billing
    from billing.models import Invoice
    from cpo.demo import demo_data_load, demo_history_load
    from cpo.models import User
    from sessions.models import ChargingSession, CustomerAccount, Driver, IdToken
    from stations.commands import services as commands
    from stations.models import ChargingStation
    from tariffs.models import Tariff
    from tests.billing.conftest import make_account, make_cdr, make_site

    demo_data_load()
    demo_history_load()
    site = make_site("ROLES-BILL-1")
    make_cdr(
        make_account("Roles account"), site, end=dt.datetime(2025, 1, 10, tzinfo=dt.UTC), excl="9"
    )
    after = dt.datetime(2025, 2, 1, 1, tzinfo=dt.UTC)
    billing.billing_periods_close_due(now=after)
    invoice = Invoice.objects.order_by("pk").first()
    billing.invoice_issue(invoice_id=invoice.pk, now=after)
    station = ChargingStation.objects.get(identity="DEMO-16")
    command = commands.command_create(station=station, verb="clear_cache", params={})
    users = {}
    for role in ROLES:
        user = User.objects.create_user(username=f"role-{role.lower()}", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        users[role] = user
    return {
        "users": users,
        "station": station,
        "session": ChargingSession.objects.filter(station=station).first(),
        "tariff": Tariff.objects.first(),
        "invoice": invoice,
        "cdr": invoice.lines.first().cdr,
        "command": command,
        "token": IdToken.objects.first(),
        "spare_token": IdToken.objects.create(uid="ROLES-SPARE", type="Central"),
        "driver": Driver.objects.first(),
        "account": CustomerAccount.objects.first(),
        "user": users["Support"],
    }


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def refused(response: Any) -> bool:
    return response.status_code in (401, 403)


# --- admin pages and actions per model ---------------------------------------------------------


def registered() -> list[tuple[Any, admin.ModelAdmin]]:
    return sorted(admin.site._registry.items(), key=lambda kv: kv[0]._meta.label_lower)


def action_names(model_admin: admin.ModelAdmin) -> set[str]:
    # Django's own list of the admin's actions (private, not in the stubs).
    actions = model_admin._get_base_actions()  # type: ignore[attr-defined]
    return {name for _func, name, _desc in actions} - {"delete_selected"}


def test_the_table_lists_every_model_admin_and_action_and_nothing_else() -> None:
    models = {model._meta.label_lower for model, _ in registered()}
    actions = {
        f"{model._meta.label_lower}.{name}"
        for model, model_admin in registered()
        for name in action_names(model_admin)
    }
    listed_models = {key for key in TABLE if key in models or re.fullmatch(r"\w+\.\w+", key)}
    listed_actions = {key for key in TABLE if re.fullmatch(r"\w+\.\w+\.\w+", key)}
    assert models - listed_models == set(), "models missing from the README Roles table"
    assert listed_models - models == set(), "README Roles rows of models not in the admin"
    assert actions - listed_actions == set(), "admin actions missing from the README Roles table"
    assert listed_actions - actions == set(), "README Roles rows of actions that do not exist"


def test_every_admin_action_states_its_permission() -> None:
    """An action without `permissions=` is offered to anyone who may see the list (issue 20,
    finding 4: Support and Finance could accept Pending stations and switch tracing)."""
    for model, model_admin in registered():
        for func, name, _desc in model_admin._get_base_actions():  # type: ignore[attr-defined]
            assert getattr(func, "allowed_permissions", ()), (
                f"{model._meta.label_lower}.{name} has no permissions="
            )


@pytest.mark.parametrize("role", ROLES)
def test_admin_pages_and_actions_per_model(world: dict[str, Any], role: str) -> None:
    user = world["users"][role]
    client = client_for(user)
    request = RequestFactory().get("/admin/")
    request.user = user
    problems = []
    for model, model_admin in registered():
        label = model._meta.label_lower
        ops = TABLE[label][role]
        assert ops <= set(MODEL_OPS), f"{label}: {ops}"
        info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        obj = model._default_manager.order_by("pk").first()
        pk = obj.pk if obj is not None else 999_999_999
        probes = {
            "view": [("get", reverse(f"{info}_changelist"))],
            "add": [("get", reverse(f"{info}_add")), ("post", reverse(f"{info}_add"))],
            "change": [("post", reverse(f"{info}_change", args=[pk]))],
            "delete": [
                ("get", reverse(f"{info}_delete", args=[pk])),
                ("post", reverse(f"{info}_delete", args=[pk])),
            ],
        }
        if obj is not None:  # the history of a missing object redirects before any check
            probes["view"].append(("get", reverse(f"{info}_history", args=[pk])))
        # Who may change may also look: Django's view permission includes change.
        expected = {op: op in ops or (op == "view" and "change" in ops) for op in MODEL_OPS}
        for op, requests in probes.items():
            for method, url in requests:
                got = not refused(getattr(client, method)(url))
                if got != expected[op]:
                    problems.append(f"{role} {method.upper()} {url} ({label} {op}): {got}")
        offered = set(model_admin.get_actions(request))
        if ("delete_selected" in offered) != expected["delete"] and model_admin.actions is not None:
            problems.append(f"{role} {label}.delete_selected: {'delete_selected' in offered}")
        for name in action_names(model_admin):
            key = f"{label}.{name}"
            if (name in offered) != allowed(key, role):
                problems.append(f"{role} action {key}: {name in offered}")
    assert problems == []


def test_support_and_finance_can_neither_accept_nor_trace_a_station(world: dict[str, Any]) -> None:
    """Issue 20, finding 4, end to end: the action is posted as the changelist posts it."""
    from stations.models import ChargingStation

    station = world["station"]
    ChargingStation.objects.filter(pk=station.pk).update(
        registration_status="Pending", trace_enabled=False
    )
    url = reverse("admin:stations_chargingstation_changelist")
    for role in ("Finance", "Support", "Operators"):
        client = client_for(world["users"][role])
        for action in ("accept_stations", "trace_on"):
            client.post(url, {"action": action, "_selected_action": [station.pk], "index": 0})
        station.refresh_from_db()
        changed = (station.registration_status, station.trace_enabled) != ("Pending", False)
        assert changed is (role == "Operators"), role


# --- every other admin, panel and API URL ------------------------------------------------------


def named_urls() -> dict[str, Any]:
    """Named URL patterns under admin/ and api/ (namespaced names), with their views, except
    the per-model admin pages covered above."""
    crud = {
        f"{model._meta.app_label}_{model._meta.model_name}_{suffix}"
        for model, _ in registered()
        for suffix in CRUD_SUFFIXES
    }
    found: dict[str, Any] = {}

    def walk(patterns: list[Any], prefix: str, namespace: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                space = pattern.namespace or namespace
                walk(pattern.url_patterns, route, space)
            elif isinstance(pattern, URLPattern) and pattern.name:
                if not route.startswith(("admin/", "api/")) or pattern.name in crud:
                    continue
                name = f"{namespace}:{pattern.name}" if namespace else pattern.name
                found[name] = pattern.callback

    walk(get_resolver().url_patterns, "", "")
    return found


def url_rows() -> dict[str, list[str]]:
    """{url name: [methods]} from the table's `METHOD name` rows."""
    rows: dict[str, list[str]] = {}
    for key in TABLE:
        if m := re.fullmatch(r"((?:GET|POST|PATCH)(?:/(?:GET|POST))?) (\S+)", key):
            rows.setdefault(m.group(2), []).extend(m.group(1).split("/"))
    return rows


def url_key(name: str, method: str) -> str:
    for key in (f"{method} {name}", f"GET/POST {name}"):
        if key in TABLE:
            return key
    raise AssertionError(f"README Roles table has no row `{method} {name}`")


def drf_methods(callback: Any) -> set[str]:
    cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if cls is None or not hasattr(cls, "permission_classes"):
        return set()
    return {m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m)}


def test_the_table_lists_every_url_and_nothing_else() -> None:
    urls = named_urls()
    rows = url_rows()
    assert set(urls) - set(rows) == set(), "URLs missing from the README Roles table"
    assert set(rows) - set(urls) == set(), "README Roles rows of URLs that do not exist"
    for name, callback in urls.items():
        missing = drf_methods(callback) - set(rows[name])
        assert not missing, f"README Roles has no row for {missing} {name}"


def url_arguments(name: str) -> list[str]:
    """The names of a named URL's arguments."""
    namespace, _, short = name.rpartition(":")
    resolver = get_resolver()
    for part in filter(None, namespace.split(":")):
        resolver = resolver.namespace_dict[part][1]
    for possibility, *_rest in resolver.reverse_dict.getlist(short):
        return list(possibility[0][1])
    return []


def probe_url(name: str, world: dict[str, Any]) -> str:
    """The URL to request: real objects where a view looks one up before it checks rights."""
    by_argument = {
        "station_id": world["station"].pk,
        "command_id": world["command"].pk,
        "job_id": 999_999,
        "endpoint_id": 999_999,
        "token_id": world["token"].pk if name != "token-delete" else world["spare_token"].pk,
        "driver_id": world["driver"].pk,
        "session_id": world["session"].pk,
        "account_id": world["account"].pk,
        "id": world["user"].pk,
        "pk": world["station"].pk,
        "object_id": world["station"].pk,
        "identity": world["station"].identity,
        "location_id": world["station"].location_id,
        "evse_pk": world["station"].evses.first().pk,
        "connector_pk": world["station"].connectors.first().pk,
        "tariff_pk": world["tariff"].pk,
        "number": 1,
        "cdr_id": world["cdr"].pk,
        "invoice_id": world["invoice"].pk,
        "api_token_id": 999_999,
        "incident_id": 999_999,
        "node_id": 999_999,
        "serial": "0",
        "root_id": 999_999,
    }
    by_name = {
        "admin:tariffs_tariff_preview": {"object_id": world["tariff"].pk},
        "admin:billing_invoice_pdf": {"pk": world["invoice"].pk},
        "admin:billing_invoice_credit": {"pk": world["invoice"].pk},
        "panel:session-curve": {"pk": world["session"].pk},
        "panel:session-credit": {"pk": world["session"].pk},
        "admin:app_list": {"app_label": "stations"},
        "admin:view_on_site": {"content_type_id": 1, "object_id": 1},
    }
    query = {
        "admin:autocomplete": "?app_label=tariffs&model_name=tariffassignment&field_name=station",
        # Which verbs a role may send is the commands table's, tested below.
        "admin:stations_chargingstation_commands": "?verb=unlock_connector",
    }
    kwargs = by_name.get(name) or {arg: by_argument[arg] for arg in url_arguments(name)}
    return reverse(name, kwargs=kwargs) + query.get(name, "")


@pytest.mark.parametrize("role", ROLES)
def test_admin_panel_and_api_urls(world: dict[str, Any], role: str) -> None:
    problems = []
    for name, methods in sorted(url_rows().items()):
        url = probe_url(name, world)
        for method in methods:
            client = client_for(world["users"][role])
            response = getattr(client, method.lower())(url)
            if refused(response) == allowed(url_key(name, method), role):
                problems.append(f"{role} {method} {url}: {response.status_code}")
    assert problems == []


# --- commands ------------------------------------------------------------------------------------


def command_key(verb: str, params: dict[str, Any]) -> str:
    """The row of the commands table a verb with its parameters falls under."""
    if not verb:
        return "raw action"
    if verb == "trigger_message" and params.get("message") == "StatusNotification":
        return "trigger_message StatusNotification"
    if verb in ("unlock_connector", "remote_stop"):
        return verb
    return "any other command"


@pytest.mark.parametrize("role", ROLES)
def test_which_commands_each_role_may_send(world: dict[str, Any], role: str) -> None:
    """The one rule (stations.commands.permissions) for every verb the project has."""
    user = world["users"][role]
    cases: list[tuple[str, dict[str, Any]]] = [(verb, {}) for verb in VERBS]
    cases += [
        ("trigger_message", {"message": m}) for m in ("StatusNotification", "BootNotification")
    ]
    cases += [("", {})]
    for verb, params in cases:
        key = command_key(verb, params)
        assert command_permissions.can_send(user, verb, params) is allowed(key, role), (
            verb,
            params,
        )


@pytest.mark.parametrize("role", ROLES)
def test_commands_through_the_panel_the_admin_page_and_the_api(
    world: dict[str, Any], role: str
) -> None:
    from stations.commands.models import Command

    station = world["station"]
    client = client_for(world["users"][role])
    panel = reverse("panel:station-command", args=[station.pk])
    page = reverse("admin:stations_chargingstation_commands", args=[station.pk])
    api = f"/api/stations/{station.pk}/commands/"
    cases: list[tuple[str, dict[str, Any]]] = [
        ("unlock_connector", {"evse_id": 1, "connector_id": 1}),
        ("trigger_message", {"message": "StatusNotification"}),
        ("remote_stop", {"transaction_id": "1"}),
        ("reset", {"type": "soft"}),
        ("trigger_message", {"message": "BootNotification"}),
        ("change_availability", {"evse_id": 1, "connector_id": 1, "operative": "false"}),
    ]
    for verb, params in cases:
        may = allowed(command_key(verb, params), role)
        before = Command.objects.count()
        answers = [
            client.post(panel, {"verb": verb, **params}, HTTP_ACCEPT="application/json"),
            client.post(f"{page}?verb={verb}", params),
            client.post(api, {"verb": verb, "params": params}, content_type="application/json"),
        ]
        for where, response in zip(("panel", "admin page", "API"), answers, strict=True):
            assert refused(response) is not may, (role, verb, params, where, response.status_code)
        assert (Command.objects.count() - before == 3) is may, (role, verb, params)
    raw = client.post(api, {"action": "ClearCache", "payload": {}}, content_type="application/json")
    assert refused(raw) is not allowed("raw action", role)


def test_group_permissions_are_the_least_the_table_needs(roles: None) -> None:  # noqa: ARG001
    """The groups' custom permissions: no role holds one the table does not give it."""
    operators = set(
        Group.objects.get(name="Operators").permissions.values_list("codename", flat=True)
    )
    finance = set(Group.objects.get(name="Finance").permissions.values_list("codename", flat=True))
    support = set(Group.objects.get(name="Support").permissions.values_list("codename", flat=True))
    assert {c for c in support if not c.startswith("view_")} == {
        "trigger_status",
        "unlock_connector",
        "remote_stop",
    }
    assert not {c for c in operators if c.startswith(("issue_", "credit_", "export_"))}
    # Finance edits billing profiles only; everything else of billing changes through actions.
    edits = {c for c in finance if c.split("_", 1)[0] in ("add", "change", "delete", "send")}
    assert edits == {f"{op}_billingprofile" for op in ("add", "change", "delete")}
