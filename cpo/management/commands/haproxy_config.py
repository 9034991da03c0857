"""Print the HAProxy configuration for daphne nodes on several machines.

    manage.py haproxy_config --bind 0.0.0.0:8000 \\
        --node app1=10.0.0.11:8001 --node app2=10.0.0.12:8001

The same file `NODES=N make run` writes for nodes on one machine (cpo.run.haproxy_config):
each node's daphne must then be started behind the PROXY protocol
(`daphne -e haproxy:tcp:port=8001:interface=10.0.0.11 ...`, as cpo.run does with NODES > 1).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cpo.run import Node, haproxy_config, haproxy_maxconn


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"not host:port: {text!r}")
    return host, int(port)


class Command(BaseCommand):
    help = "Print the HAProxy configuration for daphne nodes (name=host:port) on other machines."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="0.0.0.0:8000", help="where chargers connect")
        parser.add_argument(
            "--node",
            action="append",
            required=True,
            help="name=host:port of one daphne node (its CPO_NODE_NAME); repeat per node",
        )
        parser.add_argument(
            "--maxconn", type=int, default=0, help="default: what this machine's file limit allows"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = _address(options["bind"])
        nodes = []
        for spec in options["node"]:
            name, sep, address = spec.partition("=")
            if not sep or not name:
                raise CommandError(f"not name=host:port: {spec!r}")
            nodes.append(Node(name, *_address(address)))
        maxconn = options["maxconn"] or haproxy_maxconn()
        self.stdout.write(haproxy_config(host=host, port=port, nodes=nodes, maxconn=maxconn))
