"""The token import in a real browser: an operator uploads a file on the tokens' Import page,
lands on the import's page and watches it move (it reloads itself) until the result; a file
with a bad row shows that row and imports nothing."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from playwright.async_api import expect

from tests.cpo.panel.conftest import browser_page, login, make_staff  # noqa: F401 - fixture

# Database calls on a pool thread that closes its connection (PostgreSQL drops the test
# database at the end only when none is left open).
from tests.faults.conftest import in_thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]


def cards_csv(count: int, bad_row: int | None = None) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["uid", "type", "visual_number", "account"])
    for n in range(1, count + 1):
        account = "NOBODY" if n == bad_row else "ACME"
        writer.writerow([f"{0x06000000 + n:08X}", "ISO14443", f"NL-ACM-{n:06d}", account])
    return out.getvalue().encode()


@in_thread
def setup() -> None:
    from sessions import services

    make_staff("olivia-import", "Operators")
    services.account_create(name="Acme Fleet", reference="ACME", kind="company")


@in_thread
def token_count() -> int:
    from sessions.models import IdToken

    return IdToken.objects.count()


async def upload(page: Any, base_url: str, name: str, content: bytes) -> None:
    await page.goto(f"{base_url}/admin/charging/idtoken/")
    await page.click("a.import_link")
    await page.set_input_files(
        "input[name=import_file]", {"name": name, "mimeType": "text/csv", "buffer": content}
    )
    await page.click("#token-import-form input[type=submit]")


async def test_an_operator_uploads_cards_and_sees_the_progress_and_the_result(
    daphne_server: Any,
    celery_worker: Any,
    roles: None,
    browser_page: Any,  # noqa: F811
) -> None:
    await setup()
    page = browser_page
    base = daphne_server.http_url
    await login(page, base, "olivia-import")

    await upload(page, base, "bad.csv", cards_csv(50, bad_row=17))
    assert "/admin/charging/tokenimport/" in page.url
    errors = page.locator("table.token-import-errors")
    await expect(errors).to_contain_text("17", timeout=30_000)
    await expect(errors).to_contain_text("no account 'NOBODY'")
    await expect(page.locator(".token-import-progress")).to_contain_text(
        "refused: 1 invalid row(s) of 50"
    )
    assert await token_count() == 0

    await upload(page, base, "fleet.csv", cards_csv(1500))
    assert "/admin/charging/tokenimport/" in page.url
    progress = page.locator(".token-import-progress")
    # The page reloads itself every 2 s while the worker runs, up to the result.
    await expect(progress).to_contain_text(
        "100 % · done: 1,500 rows, 1,500 created, 0 updated", timeout=90_000
    )
    await expect(page.locator(".token-import-status")).to_have_attribute("data-status", "done")
    assert await token_count() == 1500

    await page.goto(f"{base}/admin/charging/idtoken/?q=NL-ACM-001499")
    await expect(page.locator("#result_list tbody tr")).to_have_count(1)


@in_thread
def stopped_import(content: bytes) -> int:
    from sessions.models import TokenImport

    stopped = TokenImport.objects.create(
        content=content,
        file_name="stopped.csv",
        file_format="csv",
        status=TokenImport.Status.FAILED,
        failure="Stopped after 0 rows written: OSError: disk I/O error.",
    )
    return stopped.pk


async def test_an_operator_resumes_a_stopped_import(
    daphne_server: Any,
    celery_worker: Any,
    roles: None,
    browser_page: Any,  # noqa: F811
) -> None:
    await setup()
    pk = await stopped_import(cards_csv(600))
    page = browser_page
    base = daphne_server.http_url
    await login(page, base, "olivia-import")

    await page.goto(f"{base}/admin/charging/tokenimport/")
    row = page.locator("#result_list tbody tr", has_text="stopped.csv")
    await row.locator("input.action-select").check()
    await page.select_option("select[name=action]", "resume_imports")
    await page.click("button[name=index]")
    await expect(page.locator(".messagelist")).to_contain_text("Queued 1 import(s) again")

    await page.goto(f"{base}/admin/charging/tokenimport/{pk}/change/")
    await expect(page.locator(".token-import-progress")).to_contain_text(
        "done: 600 rows, 600 created", timeout=90_000
    )
    assert await token_count() == 600
