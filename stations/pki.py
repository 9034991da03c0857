"""Our certificate authority: a root and an intermediate that signs the stations' certificates.

On first use the two are generated into PKI_DIR (DATA_DIR/pki): `root.pem`, `root-key.pem`,
`intermediate.pem`, `intermediate-key.pem` (keys readable by the owner only). An operator
supplies their own instead with PKI_ROOT_CERT, PKI_INTERMEDIATE_CERT and PKI_INTERMEDIATE_KEY
(PEM paths); the root key is then never needed here.

A station's CSR is checked as the OCPP security whitepaper (and 2.0.1 A02/A03) want: its
signature verifies, the CN is the station's identity, the O is PKI_ORGANIZATION (when set),
the key is RSA of at least 2048 bits or EC on P-256 or larger, and it is signed with SHA-256 or
stronger. What is signed goes back as a PEM chain: the station's certificate, then the
intermediate (the root the station has as its CSMSRootCertificate).

Plain functions of files and bytes: no database. The CA is read once per process.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import ipaddress
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings

MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
STRONG_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


class PkiError(Exception):
    """A CSR or certificate we do not accept; `message` is safe to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Authority:
    root: x509.Certificate
    intermediate: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @property
    def root_pem(self) -> str:
        return self.root.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def intermediate_pem(self) -> str:
        return self.intermediate.public_bytes(serialization.Encoding.PEM).decode()


_lock = threading.Lock()
_authority: Authority | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if settings.PKI_ORGANIZATION:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, settings.PKI_ORGANIZATION))
    return x509.Name(attributes)


def _ca_certificate(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePublicKey,
    days: int,
    path_length: int,
) -> x509.Certificate:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
        )
        .sign(signing_key, hashes.SHA256())
    )


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _generate(directory: Path) -> None:
    """A root (20 years) and an intermediate (10 years), EC P-256, into `directory`."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name("CPO back office OCPP root CA")
    root = _ca_certificate(
        subject=root_name,
        issuer=root_name,
        public_key=root_key.public_key(),
        signing_key=root_key,
        issuer_key=root_key.public_key(),
        days=20 * 365,
        path_length=1,
    )
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = _ca_certificate(
        subject=_name("CPO back office OCPP station CA"),
        issuer=root_name,
        public_key=intermediate_key.public_key(),
        signing_key=root_key,
        issuer_key=root_key.public_key(),
        days=10 * 365,
        path_length=0,
    )
    _write(directory / "root-key.pem", _key_pem(root_key), secret=True)
    _write(directory / "intermediate-key.pem", _key_pem(intermediate_key), secret=True)
    _write(directory / "intermediate.pem", intermediate.public_bytes(serialization.Encoding.PEM))
    # Last: its presence says the directory is complete.
    _write(directory / "root.pem", root.public_bytes(serialization.Encoding.PEM))


def _paths() -> tuple[Path, Path, Path]:
    if settings.PKI_ROOT_CERT or settings.PKI_INTERMEDIATE_CERT or settings.PKI_INTERMEDIATE_KEY:
        if not (
            settings.PKI_ROOT_CERT
            and settings.PKI_INTERMEDIATE_CERT
            and settings.PKI_INTERMEDIATE_KEY
        ):
            raise PkiError(
                "PKI_ROOT_CERT, PKI_INTERMEDIATE_CERT and PKI_INTERMEDIATE_KEY go together"
            )
        return (
            Path(settings.PKI_ROOT_CERT),
            Path(settings.PKI_INTERMEDIATE_CERT),
            Path(settings.PKI_INTERMEDIATE_KEY),
        )
    directory = Path(settings.PKI_DIR)
    if not (directory / "root.pem").exists():
        directory.mkdir(parents=True, exist_ok=True)
        # Several processes may start at once: one generates, the others wait and read.
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (directory / "root.pem").exists():
                _generate(directory)
    return (
        directory / "root.pem",
        directory / "intermediate.pem",
        directory / "intermediate-key.pem",
    )


def authority() -> Authority:
    """The CA, generated on first use unless the operator supplied one."""
    global _authority
    with _lock:
        if _authority is None:
            root_path, intermediate_path, key_path = _paths()
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
                raise PkiError("the intermediate key must be RSA or EC")
            _authority = Authority(
                root=x509.load_pem_x509_certificate(root_path.read_bytes()),
                intermediate=x509.load_pem_x509_certificate(intermediate_path.read_bytes()),
                intermediate_key=key,
            )
        return _authority


def authority_forget() -> None:
    """Read the CA again on next use (tests that change PKI_* settings)."""
    global _authority
    with _lock:
        _authority = None


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def _check_key(public_key: object) -> None:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise PkiError(f"RSA key of {public_key.key_size} bits: at least {MIN_RSA_BITS}")
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.key_size < MIN_EC_BITS:
            raise PkiError(f"EC key on {public_key.curve.name}: P-256 or larger")
    else:
        raise PkiError("the key must be RSA (2048 bits or more) or EC (P-256 or larger)")


def csr_check(csr_pem: str, *, identity: str) -> x509.CertificateSigningRequest:
    """The CSR of station `identity` if we sign it; PkiError says why not."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem.strip().encode())
    except ValueError as error:
        raise PkiError("not a PEM certificate signing request") from error
    try:
        valid = csr.is_signature_valid
    except (InvalidSignature, ValueError, TypeError):
        valid = False
    if not valid:
        raise PkiError("the CSR's signature does not verify")
    algorithm = csr.signature_hash_algorithm
    if not isinstance(algorithm, STRONG_HASHES):
        name = algorithm.name if algorithm else "none"
        raise PkiError(f"signed with {name}: SHA-256 or stronger")
    _check_key(csr.public_key())
    common_name = _attribute(csr.subject, NameOID.COMMON_NAME)
    if common_name != identity:
        raise PkiError(f"the CN {common_name[:60]!r} is not the station's identity")
    organization = settings.PKI_ORGANIZATION
    if organization and _attribute(csr.subject, NameOID.ORGANIZATION_NAME) != organization:
        raise PkiError(f"the O must be {organization!r}")
    return csr


@dataclass(frozen=True)
class Signed:
    certificate: x509.Certificate
    chain_pem: str  # the certificate, then the intermediate

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()[:255]


def _client_certificate(
    *, subject: x509.Name, public_key: object, days: int, server_names: list[str] | None = None
) -> Signed:
    ca = authority()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.intermediate.subject)
        .public_key(public_key)  # type: ignore[arg-type]  # checked by _check_key
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH]
                if server_names
                else [ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.intermediate_key.public_key()),
            critical=False,
        )
    )
    if server_names:
        alternatives: list[x509.GeneralName] = []
        for name in server_names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
    certificate = builder.sign(ca.intermediate_key, hashes.SHA256())
    chain = certificate.public_bytes(serialization.Encoding.PEM).decode() + ca.intermediate_pem
    return Signed(certificate, chain)


def csr_sign(csr: x509.CertificateSigningRequest, *, days: int | None = None) -> Signed:
    """Sign a checked CSR (csr_check) as a station's client certificate."""
    return _client_certificate(
        subject=csr.subject, public_key=csr.public_key(), days=days or settings.PKI_CERTIFICATE_DAYS
    )


def server_certificate(
    names: list[str], *, days: int = 825
) -> tuple[Signed, ec.EllipticCurvePrivateKey]:
    """A TLS server certificate (and its new key) for daphne or the proxy, from our CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    signed = _client_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]),
        public_key=key.public_key(),
        days=days,
        server_names=names,
    )
    return signed, key


def key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return _key_pem(key).decode()


def certificate_load(pem: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem.strip().encode())
    except ValueError as error:
        raise PkiError("not a PEM certificate") from error


def serial_hex(certificate: x509.Certificate) -> str:
    return format(certificate.serial_number, "x")


def certificate_hash_data(pem: str, *, issuer_pem: str = "") -> dict[str, str]:
    """OCPP CertificateHashData (SHA256) of a certificate: what DeleteCertificate names. The
    issuer's key is the certificate's own for a root, else `issuer_pem`'s."""
    certificate = certificate_load(pem)
    issuer = certificate_load(issuer_pem) if issuer_pem else certificate
    key_bits = issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The hash is of the key's BIT STRING contents (as in OCSP's issuerKeyHash).
    bit_string = _spki_bit_string(key_bits)
    return {
        "hash_algorithm": "SHA256",
        "issuer_name_hash": hashlib.sha256(certificate.issuer.public_bytes()).hexdigest(),
        "issuer_key_hash": hashlib.sha256(bit_string).hexdigest(),
        "serial_number": serial_hex(certificate),
    }


def _spki_bit_string(spki_der: bytes) -> bytes:
    """The subjectPublicKey BIT STRING contents of a DER SubjectPublicKeyInfo."""

    def read(data: bytes, at: int) -> tuple[int, int, int]:  # tag, content start, content end
        tag = data[at]
        length = data[at + 1]
        at += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(data[at : at + count], "big")
            at += count
        return tag, at, at + length

    _, start, _ = read(spki_der, 0)  # SEQUENCE
    _, _, algorithm_end = read(spki_der, start)  # AlgorithmIdentifier
    tag, bits_start, bits_end = read(spki_der, algorithm_end)
    if tag != 0x03:
        raise PkiError("malformed public key")
    return spki_der[bits_start + 1 : bits_end]  # past the unused-bits byte


def crl_pem(revoked: list[tuple[str, dt.datetime]]) -> str:
    """A CRL of the intermediate over the revoked serials (hex, revocation time), for a TLS
    proxy's crl-file; valid 7 days."""
    ca = authority()
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.intermediate.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=7))
    )
    for serial, at in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial, 16))
            .revocation_date(at)
            .build()
        )
    crl = builder.sign(ca.intermediate_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM).decode()


def crl_write(revoked: list[tuple[str, dt.datetime]]) -> Path:
    path = Path(settings.PKI_DIR) / "crl.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, crl_pem(revoked).encode())
    return path
