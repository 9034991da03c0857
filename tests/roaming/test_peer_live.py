"""OCPI against an independent implementation: a stand-in eMSP built on extrawest-ocpi (PyPI),
in its own virtualenv, as a separate process on loopback, against our live daphne.

Run alone with `-m live tests/roaming/test_peer_live.py`. The peer's virtualenv is made once
under the test data directory; without PyPI (no index reachable) the tests are skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from roaming import services
from roaming.models import OurParty, Partner
from tariffs.models import TariffAssignment
from tests.billing.conftest import make_tariff
from tests.conftest import ROOT, DaphneServer, free_port, server_env, wait_for_port
from tests.roaming.conftest import make_site

pytestmark = [pytest.mark.live]

PEER_PACKAGES = ("extrawest-ocpi==2025.7.16", "uvicorn>=0.30,<1")
PEER_SCRIPT = Path(__file__).parent / "peer" / "emsp_peer.py"
PEER_TOKEN_A = "peer-token-A-for-the-cpo"
# pip's words when no index can be reached (as opposed to a package that fails to install).
UNREACHABLE = (
    "Could not fetch URL",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "No matching distribution",
)


@pytest.fixture(scope="session")
def peer_python() -> Path:
    """The peer virtualenv's python, made once (kept between runs under the data directory)."""
    venv = Path(settings.DATA_DIR) / "ocpi-peer-venv"
    python = venv / "bin" / "python"
    stamp = venv / (".installed-" + "-".join(PEER_PACKAGES).replace("/", "_").replace(" ", ""))
    if stamp.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        output = done.stdout + done.stderr
        if any(word in output for word in UNREACHABLE):
            pytest.skip(
                f"PyPI is unreachable, the stand-in eMSP cannot be installed: {output[-300:]}"
            )
        raise RuntimeError(f"installing the stand-in eMSP failed:\n{output[-3000:]}")
    stamp.touch()
    return python


class Peer:
    def __init__(
        self,
        python: Path,
        versions: str = "2.2.1,2.1.1",
        *,
        party_id: str = "MSP",
        authorize_delay: float = 0.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.versions_url = f"{self.url}/ocpi/versions"
        self.log = Path(settings.DATA_DIR) / f"ocpi-peer-{self.port}.log"
        self.process = subprocess.Popen(
            [
                *(str(python), str(PEER_SCRIPT), "--port", str(self.port)),
                *("--token-a", PEER_TOKEN_A, "--versions", versions),
                *("--party-id", party_id, "--authorize-delay", str(authorize_delay)),
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.process)

    def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (loopback)
            f"{self.url}/control/{path}",
            data=data,
            method="POST" if body is not None else "GET",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(
                f"peer {path}: {error.code} {error.read()[:2000]!r}\n{self.log.read_text()[-3000:]}"
            ) from error

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def peer(peer_python: Path) -> Iterator[Peer]:
    started = Peer(peer_python)
    yield started
    started.stop()


@pytest.fixture
def peer_211(peer_python: Path) -> Iterator[Peer]:
    """The same peer offering OCPI 2.1.1 only."""
    started = Peer(peer_python, versions="2.1.1")
    yield started
    started.stop()


@pytest.fixture(scope="session")
def ocpi_daphne(django_db_setup: Any, django_db_blocker: Any) -> Iterator[DaphneServer]:  # noqa: ARG001
    """Our daphne on loopback, told its own public base URL (for versions and Link headers)."""
    from cpo.run import daphne_command

    port = free_port()
    log = Path(settings.DATA_DIR) / f"daphne-ocpi-{port}.log"
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [*daphne_command(), "-b", "127.0.0.1", "-p", str(port), "cpo.asgi:application"],
        cwd=ROOT,
        env=server_env(CPO_NODE_NAME="ocpi", ROAMING_OCPI_BASE_URL=base),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, process)
    server = DaphneServer(port, process, log)
    yield server
    server.stop()


@pytest.fixture
def network(transactional_db: Any) -> tuple[OurParty, list[Any]]:  # noqa: ARG001
    party = OurParty.objects.create(
        country_code="NL", party_id="CPO", name="CPO Operations", is_default=True
    )
    return party, [make_site(f"LIVE{i}", evses=2) for i in range(5)]


def test_the_peer_registers_with_our_token_a_and_crawls_our_locations(
    ocpi_daphne: DaphneServer, peer: Peer, network: tuple[OurParty, list[Any]]
) -> None:
    party, sites = network
    partner = Partner.objects.create(name="Stand-in eMSP")
    partner.allowed_parties.add(party)
    token_a = services.registration_token_issue(partner_id=partner.pk)
    ours = f"{ocpi_daphne.http_url}/ocpi/versions"

    registered = peer.control(
        "register", {"versions_url": ours, "token_a": token_a, "version": "2.2.1"}
    )

    assert registered["answer"]["roles"][0]["party_id"] == "CPO"
    partner.refresh_from_db()
    assert partner.status == Partner.Status.REGISTERED
    assert partner.version == "2.2.1"
    assert partner.party_keys() == {("DE", "MSP")}
    assert partner.endpoint_url("credentials") == f"{peer.url}/ocpi/emsp/2.2.1/credentials/"
    assert services.unseal(partner.their_token_sealed) == registered["token_b"]
    crawl = peer.control("crawl", {"versions_url": ours, "version": "2.2.1", "limit": 2})
    assert [page["count"] for page in crawl["pages"]] == [2, 2, 1]
    assert {page["total"] for page in crawl["pages"]} == {"5"}
    assert crawl["pages"][-1]["link"] is None
    assert sorted(crawl["ids"]) == sorted(str(site.pk) for site in sites)
    assert sum(page["evses"] for page in crawl["pages"]) == 10
    make_tariff(tariff_id="LIVE-AC")
    tariffs = peer.control("crawl", {"versions_url": ours, "module": "tariffs", "limit": 10})
    # The package keeps CiString values (case-insensitive ids) in lower case.
    assert [tariff_id.upper() for tariff_id in tariffs["ids"]] == ["LIVE-AC"]
    # Token A is spent: another registration with it is refused at our versions already.
    with pytest.raises(AssertionError, match="HTTP 401"):
        peer.control("register", {"versions_url": ours, "token_a": token_a, "version": "2.2.1"})


def test_we_register_with_the_peer_and_it_crawls_with_the_token_we_gave(
    ocpi_daphne: DaphneServer, peer: Peer, network: tuple[OurParty, list[Any]]
) -> None:
    party, sites = network
    partner = Partner.objects.create(name="Stand-in eMSP")
    partner.allowed_parties.add(party)
    with override_settings(ROAMING_OCPI_BASE_URL=ocpi_daphne.http_url):
        registered = services.partner_register(
            partner_id=partner.pk, versions_url_theirs=peer.versions_url, their_token_a=PEER_TOKEN_A
        )
    assert registered.status == Partner.Status.REGISTERED
    assert registered.version == "2.2.1"
    state = peer.control("state")
    assert state["exchanges"][-1]["as"] == "receiver"
    # The peer called our versions with the token we gave it, inside its credentials POST.
    assert {e["identifier"] for e in state["exchanges"][-1]["endpoints"]["endpoints"]} == {
        "credentials",
        "locations",
        "tariffs",
        "tokens",
        "sessions",
        "cdrs",
        "commands",
        "chargingprofiles",
        "hubclientinfo",
    }
    assert services.unseal(registered.their_token_sealed) == state["issued"][-1]
    crawl = peer.control(
        "crawl",
        {"versions_url": f"{ocpi_daphne.http_url}/ocpi/versions", "version": "2.2.1", "limit": 3},
    )
    assert [page["count"] for page in crawl["pages"]] == [3, 2]
    assert sorted(crawl["ids"]) == sorted(str(site.pk) for site in sites)


def test_211_both_ways_with_raw_tokens(
    ocpi_daphne: DaphneServer, peer_211: Peer, network: tuple[OurParty, list[Any]]
) -> None:
    party, sites = network
    ours = f"{ocpi_daphne.http_url}/ocpi/versions"
    # The peer registers with us on 2.1.1: flat credentials, raw tokens.
    receiver = Partner.objects.create(name="Stand-in eMSP 2.1.1")
    receiver.allowed_parties.add(party)
    token_a = services.registration_token_issue(partner_id=receiver.pk)
    registered = peer_211.control(
        "register", {"versions_url": ours, "token_a": token_a, "version": "2.1.1"}
    )
    assert registered["answer"]["party_id"] == "CPO"
    assert "roles" not in registered["answer"]
    receiver.refresh_from_db()
    assert (receiver.status, receiver.version, receiver.encode_token_b64) == (
        "REGISTERED",
        "2.1.1",
        False,
    )
    assert receiver.endpoint_url("credentials") == f"{peer_211.url}/ocpi/emsp/2.1.1/credentials/"
    # We register with the peer on 2.1.1 (the only version it offers).
    initiator = Partner.objects.create(name="Stand-in eMSP 2.1.1 (ours)")
    initiator.allowed_parties.add(party)
    with override_settings(ROAMING_OCPI_BASE_URL=ocpi_daphne.http_url):
        done = services.partner_register(
            partner_id=initiator.pk,
            versions_url_theirs=peer_211.versions_url,
            their_token_a=PEER_TOKEN_A,
        )
    assert (done.status, done.version, done.encode_token_b64) == ("REGISTERED", "2.1.1", False)
    assert done.party_keys() == {("DE", "MSP")}
    state = peer_211.control("state")
    assert services.unseal(done.their_token_sealed) == state["issued"][-1]
    # It crawls our locations (every connector priced: its 2.1.1 model requires tariff_id)
    # and tariffs on 2.1.1 with the token we gave it.
    TariffAssignment.objects.create(tariff=make_tariff(tariff_id="LIVE-211"))
    crawl = peer_211.control("crawl", {"versions_url": ours, "version": "2.1.1", "limit": 2})
    assert [page["count"] for page in crawl["pages"]] == [2, 2, 1]
    assert sorted(crawl["ids"]) == sorted(str(site.pk) for site in sites)
    tariffs = peer_211.control(
        "crawl", {"versions_url": ours, "version": "2.1.1", "module": "tariffs"}
    )
    assert [tariff_id.upper() for tariff_id in tariffs["ids"]] == ["LIVE-211"]
