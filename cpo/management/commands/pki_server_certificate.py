"""Issue a TLS server certificate from our CA (stations.pki) for daphne's own TLS endpoint or
for the TLS proxy, so that stations that trust our root (their CSMSRootCertificate) trust the
server too. Creates the CA on first use, like the OCPP edge does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from stations import pki


class Command(BaseCommand):
    help = (
        "Write a TLS server certificate of our CA for NAME(s): DIR/server.pem (certificate),"
        " DIR/chain.pem (intermediate), DIR/server-key.pem and DIR/haproxy.pem (all three,"
        " for HAProxy's crt), and DIR/root.pem (the root stations and HAProxy's ca-file trust)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="+", help="host names or IP addresses")
        parser.add_argument("--out", required=True, help="directory to write to")
        parser.add_argument("--days", type=int, default=825)

    def handle(self, *args: Any, **options: Any) -> None:
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        ca = pki.authority()
        signed, key = pki.server_certificate(options["names"], days=options["days"])
        leaf = signed.chain_pem[: signed.chain_pem.index(ca.intermediate_pem)]
        files = {
            "server.pem": leaf,
            "chain.pem": ca.intermediate_pem,
            "root.pem": ca.root_pem,
        }
        for name, text in files.items():
            (out / name).write_text(text)
        for name, text in (
            ("server-key.pem", pki.key_pem(key)),
            ("haproxy.pem", signed.chain_pem + pki.key_pem(key)),
        ):
            path = out / name
            path.write_text(text)
            os.chmod(path, 0o600)
        self.stdout.write(f"server certificate {signed.serial} for {', '.join(options['names'])}")
        self.stdout.write(
            f"wrote server.pem, chain.pem, server-key.pem, haproxy.pem, root.pem to {out}"
        )
