"""Our CA: generated on first use into PKI_DIR (keys private), or the operator's own from
PKI_* paths; the CSR checks of the security whitepaper; the server-certificate command."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from django.core.management import call_command

from stations import pki


@pytest.fixture
def fresh_ca(settings, tmp_path: Path) -> Iterator[Path]:
    settings.PKI_DIR = tmp_path / "pki"
    pki.authority_forget()
    yield settings.PKI_DIR
    pki.authority_forget()


def csr_of(name: x509.Name, key, algorithm=None) -> str:
    built = x509.CertificateSigningRequestBuilder().subject_name(name)
    csr = built.sign(key, algorithm or hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def named(cn: str, o: str = "") -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if o:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    return x509.Name(parts)


def test_the_ca_is_generated_once_with_private_keys(fresh_ca: Path) -> None:
    ca = pki.authority()
    assert sorted(p.name for p in fresh_ca.glob("*.pem")) == [
        "intermediate-key.pem",
        "intermediate.pem",
        "root-key.pem",
        "root.pem",
    ]
    for key in ("root-key.pem", "intermediate-key.pem"):
        assert stat.S_IMODE((fresh_ca / key).stat().st_mode) == 0o600
    ca.intermediate.verify_directly_issued_by(ca.root)
    pki.authority_forget()
    assert pki.authority().root == ca.root  # read back, not generated again


def test_an_operator_supplies_their_own_ca(fresh_ca: Path, settings, tmp_path: Path) -> None:
    ours = pki.authority()  # stands in for the operator's CA files
    own = tmp_path / "own"
    own.mkdir()
    (own / "root.pem").write_text(ours.root_pem)
    (own / "sub.pem").write_text(ours.intermediate_pem)
    (own / "sub-key.pem").write_bytes((fresh_ca / "intermediate-key.pem").read_bytes())
    settings.PKI_DIR = tmp_path / "unused"
    settings.PKI_ROOT_CERT = str(own / "root.pem")
    settings.PKI_INTERMEDIATE_CERT = str(own / "sub.pem")
    settings.PKI_INTERMEDIATE_KEY = str(own / "sub-key.pem")
    pki.authority_forget()
    assert pki.authority().intermediate == ours.intermediate
    assert not (tmp_path / "unused").exists()
    settings.PKI_INTERMEDIATE_KEY = ""
    pki.authority_forget()
    with pytest.raises(pki.PkiError, match="go together"):
        pki.authority()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: csr_of(named("OTHER"), ec.generate_private_key(ec.SECP256R1())), "CN"),
        (
            lambda: csr_of(
                named("CP-1"),
                rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505
            ),
            "at least 2048",
        ),
        (lambda: csr_of(named("CP-1"), ec.generate_private_key(ec.SECP192R1())), "P-256"),
        (
            lambda: csr_of(named("CP-1"), rsa.generate_private_key(65537, 2048), hashes.SHA224()),  # noqa: S303
            "SHA-256",
        ),
        (lambda: "-----BEGIN CERTIFICATE REQUEST-----", "not a PEM"),
    ],
)
def test_csrs_we_do_not_sign(fresh_ca: Path, make, why: str) -> None:
    with pytest.raises(pki.PkiError, match=why):
        pki.csr_check(make(), identity="CP-1")


def test_the_organisation_must_match_when_configured(fresh_ca: Path, settings) -> None:
    settings.PKI_ORGANIZATION = "ACME CPO"
    key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(pki.PkiError, match="O must be"):
        pki.csr_check(csr_of(named("CP-1", "Someone"), key), identity="CP-1")
    csr = pki.csr_check(csr_of(named("CP-1", "ACME CPO"), key), identity="CP-1")
    signed = pki.csr_sign(csr)
    assert signed.certificate.subject == named("CP-1", "ACME CPO")
    signed.certificate.verify_directly_issued_by(pki.authority().intermediate)
    usage = signed.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usage.value


def test_server_certificate_command_writes_a_chain_openssl_verifies(
    fresh_ca: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tls"
    call_command("pki_server_certificate", "127.0.0.1", "csms.example.com", "--out", str(out))
    verified = subprocess.run(  # noqa: S603
        [
            "/usr/bin/openssl",
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            str(out / "root.pem"),
            "-untrusted",
            str(out / "chain.pem"),
            str(out / "server.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert stat.S_IMODE((out / "server-key.pem").stat().st_mode) == 0o600
