"""Security profiles over real TLS, with certificates of our own CA (stations.pki).

Two servers, as the README runs them: daphne serving TLS itself (`-e ssl:...`, profile 2), and
HAProxy terminating TLS with client-certificate verification in front of a plain daphne,
forwarding the verified certificate's subject and serial (profile 3). The stations are the
`ocpp` library's charge points over `websockets` with an ssl context.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from asgiref.sync import sync_to_async
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from stations import pki
from stations.commands import security
from stations.commands.models import SecurityChange
from stations.models import ChargingStation, StationCertificate, StationConnection
from tests.conftest import BIN, ROOT, free_port, server_env, wait_for_port
from tests.ocpp_client import station
from tests.stations.conftest import until, until_final

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "station-secret-0001"
HAPROXY = "/usr/sbin/haproxy"


class Servers:
    def __init__(self, directory: Path):
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.tls_url = ""  # daphne serving TLS itself
        self.proxy_url = ""  # HAProxy with client certificates, in front of a plain daphne

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker) -> Iterator[Servers]:  # noqa: ARG001
    directory = Path(tempfile.mkdtemp(prefix="cpo-tls-"))
    running = Servers(directory)
    ca = pki.authority()
    signed, key = pki.server_certificate(["127.0.0.1", "localhost"])
    leaf = signed.chain_pem.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    cert = _write(directory / "server.pem", leaf)
    key_file = _write(directory / "server-key.pem", pki.key_pem(key))
    chain = _write(directory / "chain.pem", ca.intermediate_pem)
    _write(directory / "haproxy.pem", signed.chain_pem + pki.key_pem(key))
    _write(directory / "ca.pem", ca.root_pem)
    try:
        # Profile 2: daphne's own TLS endpoint (twisted), the port named in OCPP_TLS_PORTS.
        port = free_port()
        log = Path(settings.DATA_DIR) / f"daphne-tls-{port}.log"
        endpoint = (
            f"ssl:{port}:interface=127.0.0.1:privateKey={key_file}:certKey={cert}"
            f":extraCertChain={chain}"
        )
        process = subprocess.Popen(
            [str(BIN / "daphne"), "-e", endpoint, "cpo.asgi:application"],
            cwd=ROOT,
            env=server_env(CPO_NODE_NAME="node-tls", OCPP_TLS_PORTS=str(port)),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        running.processes.append(process)
        wait_for_port(port, process)
        running.tls_url = f"wss://127.0.0.1:{port}/ocpp"

        # Profile 3: HAProxy verifies client certificates against our root and forwards the
        # subject and serial to a daphne that trusts it (and only it reaches that daphne).
        backend_port = free_port()
        log = Path(settings.DATA_DIR) / f"daphne-proxied-{backend_port}.log"
        process = subprocess.Popen(
            [
                str(BIN / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(backend_port),
                "cpo.asgi:application",
            ],
            cwd=ROOT,
            env=server_env(CPO_NODE_NAME="node-proxied", OCPP_TRUSTED_PROXIES="127.0.0.1"),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        running.processes.append(process)
        wait_for_port(backend_port, process)
        proxy_port = free_port()
        config = (ROOT / "cpo" / "deploy" / "haproxy-ocpp.cfg").read_text()
        config = (
            config.replace("/etc/haproxy/csms.pem", str(directory / "haproxy.pem"))
            .replace("/etc/haproxy/ocpp-root.pem", str(directory / "ca.pem"))
            .replace("*:443", f"127.0.0.1:{proxy_port}")
            .replace("127.0.0.1:8000", f"127.0.0.1:{backend_port}")
        )
        _write(directory / "haproxy.cfg", config)
        log = Path(settings.DATA_DIR) / f"haproxy-{proxy_port}.log"
        process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(directory / "haproxy.cfg")],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        running.processes.append(process)
        wait_for_port(proxy_port, process)
        running.proxy_url = f"wss://127.0.0.1:{proxy_port}/ocpp"
        yield running
    finally:
        running.stop()
        shutil.rmtree(directory, ignore_errors=True)


def trusting_context(client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    """A station's TLS context: our root as its CSMSRootCertificate, and its client
    certificate (chain, key) for profile 3."""
    context = ssl.create_default_context(cadata=pki.authority().root_pem)
    if client:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def make_csr(identity: str, key=None, *, organization: str = "") -> tuple[str, object]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, identity)]
    if organization:
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


@sync_to_async
def make_station(identity: str, *, protocol: str, profile: int = 0) -> ChargingStation:
    row = ChargingStation(identity=identity, protocol=protocol, security_profile=profile)
    row.set_password(PASSWORD)
    row.save()
    return row


async def refused(url: str, identity: str, **kwargs) -> bool:
    try:
        async with station(url, identity, **kwargs):
            return False
    except websockets.InvalidStatus as error:
        # 403 today; 401 once the handshake answers RFC 7235's status.
        return error.response.status_code in (401, 403)


def calls(cp, action: str) -> list[dict]:
    return [payload for name, payload in cp.cp.received_calls if name == action]


async def test_profile2_station_signs_a_certificate_and_moves_to_profile3(servers, settings):
    settings.OCPP_CSMS_URL = servers.proxy_url + "/SEC-201"
    await make_station("SEC-201", protocol="ocpp2.0.1", profile=2)
    csr, key = make_csr("SEC-201")
    context = trusting_context()

    # Profile 2: HTTP Basic over daphne's own TLS.
    async with station(
        servers.tls_url, "SEC-201", protocol="ocpp2.0.1", password=PASSWORD, ssl=context
    ) as cp:
        answer = await cp.cp.call(
            call201.SignCertificate(csr=csr, certificate_type="ChargingStationCertificate")
        )
        assert answer.status == "Accepted"
        await until(lambda: calls(cp, "CertificateSigned"))
        # CertificateSigned came after the answer, with a chain of our CA.
        signed = calls(cp, "CertificateSigned")[0]
        assert signed["certificate_type"] == "ChargingStationCertificate"
        chain = x509.load_pem_x509_certificates(signed["certificate_chain"].encode())
        ca = pki.authority()
        assert chain[0].subject.rfc4514_string() == "CN=SEC-201"
        assert chain[0].issuer == ca.intermediate.subject
        chain[0].verify_directly_issued_by(ca.intermediate)
        ca.intermediate.verify_directly_issued_by(ca.root)
        assert chain[0].public_key() == key.public_key()  # type: ignore[attr-defined]

        # The upgrade: our root, the network profile, then its priority; stored once accepted.
        row = await sync_to_async(ChargingStation.objects.get)(identity="SEC-201")
        change = await sync_to_async(security.security_profile_upgrade)(station=row, profile=3)
        await until_final(change.command_id)
        await until(
            lambda: SecurityChange.objects.get(pk=change.pk).status == SecurityChange.Status.APPLIED
        )
        installed = calls(cp, "InstallCertificate")[0]
        assert installed["certificate_type"] == "CSMSRootCertificate"
        assert installed["certificate"].strip() == ca.root_pem.strip()
        network = calls(cp, "SetNetworkProfile")[0]["connection_data"]
        assert network["security_profile"] == 3
        assert network["ocpp_csms_url"] == settings.OCPP_CSMS_URL
        priority = calls(cp, "SetVariables")[0]["set_variable_data"][0]
        assert priority["variable"]["name"] == "NetworkConfigurationPriority"
    row = await sync_to_async(ChargingStation.objects.get)(identity="SEC-201")
    assert row.security_profile == 3

    # Profile 3 through HAProxy with the signed certificate.
    cert_file = servers.directory / "SEC-201.pem"
    key_file = servers.directory / "SEC-201-key.pem"
    cert_file.write_text(signed["certificate_chain"])
    key_file.write_text(pki.key_pem(key))  # type: ignore[arg-type]
    client = trusting_context((cert_file, key_file))
    async with station(servers.proxy_url, "SEC-201", protocol="ocpp2.0.1", ssl=client) as cp:
        await cp.cp.call(call201.Heartbeat())
    connection = await sync_to_async(
        lambda: StationConnection.objects.filter(station=row).order_by("-id").first()
    )()
    assert connection.security_profile == 3

    # The upgraded station's profile-2 connection (right password, TLS) is refused now.
    assert await refused(
        servers.tls_url, "SEC-201", protocol="ocpp2.0.1", password=PASSWORD, ssl=context
    )
    # ...and so is profile 1 (no TLS terminator here either).
    assert await refused(
        servers.proxy_url, "SEC-201", protocol="ocpp2.0.1", password=PASSWORD, ssl=context
    )

    # Revoked: the same certificate is refused at the handshake.
    certificate = await sync_to_async(StationCertificate.objects.get)(station=row)
    assert await sync_to_async(security.certificate_revoke)(certificate=certificate, by="test")
    assert await refused(servers.proxy_url, "SEC-201", protocol="ocpp2.0.1", ssl=client)
    crl = x509.load_pem_x509_crl((Path(settings.PKI_DIR) / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(certificate.serial, 16)) is not None


async def test_profile2_station_is_refused_on_plain_ws(daphne_server, servers):
    await make_station("SEC-PLAIN", protocol="ocpp1.6", profile=2)
    assert await refused(daphne_server.ws_url, "SEC-PLAIN", password=PASSWORD)
    async with station(servers.tls_url, "SEC-PLAIN", password=PASSWORD, ssl=trusting_context()):
        pass


async def test_a_csr_that_does_not_name_the_station_or_is_weak_is_rejected(servers):
    await make_station("SEC-16", protocol="ocpp1.6", profile=2)
    # A key too small on purpose: the CSR check must refuse it.
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    async with station(servers.tls_url, "SEC-16", password=PASSWORD, ssl=trusting_context()) as cp:
        other, _ = make_csr("SOMEONE-ELSE")
        assert (await cp.cp.call(call16.SignCertificate(csr=other))).status == "Rejected"
        small, _ = make_csr("SEC-16", weak)
        assert (await cp.cp.call(call16.SignCertificate(csr=small))).status == "Rejected"
        good, _ = make_csr("SEC-16")
        assert (await cp.cp.call(call16.SignCertificate(csr=good))).status == "Accepted"
        await until(lambda: calls(cp, "CertificateSigned"))
    assert (
        await sync_to_async(StationCertificate.objects.filter(station__identity="SEC-16").count)()
        == 1
    )


async def test_a_downgrade_is_refused(servers):
    row = await make_station("SEC-DOWN", protocol="ocpp1.6", profile=2)
    from stations.commands.verbs import CommandError

    for profile in (1, 2):
        with pytest.raises(CommandError, match="downgrade"):
            await sync_to_async(security.security_profile_upgrade)(station=row, profile=profile)
    with pytest.raises(CommandError, match="certificate"):
        await sync_to_async(security.security_profile_upgrade)(station=row, profile=3)
