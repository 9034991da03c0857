"""A stand-in eMSP for the OCPI tests, built on a third-party OCPI implementation.

It runs in its own virtualenv (extrawest-ocpi pins an old FastAPI and pydantic 1), started
by tests/roaming/test_peer_live.py as a separate process on loopback:

    python emsp_peer.py --port 8123 --token-a <the token A it hands out> [--versions 2.1.1]

The package serves the eMSP side: versions, version details, the credentials module (its own
POST/PUT handlers call our versions back) and the receiver interfaces of locations, sessions,
CDRs and tariffs on both versions: every object we push is parsed by the package's own
pydantic models of that version before it reaches the store here (a body they refuse is
answered with an error, which our outbox dead-letters and the tests see). Around it,
/control/ routes let the test drive the peer as the initiator of a registration and as a
client crawling our locations (everything we answer is parsed with the package's pydantic
models of that version), take it down and back up, and read what it received.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-a", required=True)
    parser.add_argument("--versions", default="2.2.1,2.1.1", help="the versions it offers")
    parser.add_argument("--party-id", default="MSP", help="its party id (country DE)")
    parser.add_argument(
        "--authorize-delay",
        type=float,
        default=0.0,
        help="seconds it takes to answer a real-time authorization",
    )
    args = parser.parse_args()
    # The package reads its settings from the environment when it is imported.
    os.environ.update(
        {
            "OCPI_HOST": f"127.0.0.1:{args.port}",
            "PROTOCOL": "http",
            "COUNTRY_CODE": "DE",
            "PARTY_ID": args.party_id,
        }
    )

    import asyncio

    import httpx
    import uvicorn
    from fastapi import Body, HTTPException
    from py_ocpi.core.authentication.authenticator import Authenticator
    from py_ocpi.core.crud import Crud
    from py_ocpi.core.enums import Action, ModuleID, RoleEnum
    from py_ocpi.main import get_application
    from py_ocpi.modules.chargingprofiles.v_2_2_1.schemas import (
        ActiveChargingProfileResult,
        ChargingProfileResponse,
        ChargingProfileResult,
        ClearProfileResult,
    )
    from py_ocpi.modules.commands.v_2_1_1.schemas import CommandResponse as CommandResponse211
    from py_ocpi.modules.commands.v_2_2_1.schemas import CommandResponse as CommandResponse221
    from py_ocpi.modules.commands.v_2_2_1.schemas import CommandResult as CommandResult221
    from py_ocpi.modules.credentials.v_2_1_1.schemas import Credentials as Credentials211
    from py_ocpi.modules.credentials.v_2_2_1.schemas import Credentials as Credentials221
    from py_ocpi.modules.locations.v_2_1_1.schemas import Location as Location211
    from py_ocpi.modules.locations.v_2_2_1.schemas import Location as Location221
    from py_ocpi.modules.tariffs.v_2_1_1.schemas import Tariff as Tariff211
    from py_ocpi.modules.tariffs.v_2_2_1.schemas import Tariff as Tariff221
    from py_ocpi.modules.versions.enums import VersionNumber
    from pydantic import ValidationError

    args_ns = args
    base = f"http://127.0.0.1:{args.port}"
    versions_url = f"{base}/ocpi/versions"
    # Tokens the peer issued (we call it with them) and the ones we gave it.
    state: dict[str, Any] = {
        "token_a": args.token_a,
        "issued": [],
        "ours": None,
        "exchanges": [],
        # What we pushed: {module: {object id: object}}, and every push in arrival order.
        "store": {},
        "pushes": [],
        # While true, every non-control request is answered HTTP 503 (the peer is "down").
        "down": False,
        # Real-time authorizations it was asked (uid, location reference), and the commands it
        # sent with the results it got at its response URLs.
        "authorizations": [],
        "commands": {},
    }

    def token_object(uid: str, version: str) -> dict[str, Any]:
        token: dict[str, Any] = {
            "uid": uid,
            "type": "RFID",
            "issuer": "Stand-in eMSP",
            "valid": True,
            "whitelist": "ALLOWED",
            "last_updated": "2026-01-01T00:00:00Z",
        }
        if version == "2.1.1":
            return token | {"auth_id": f"DE-{args.party_id}-{uid}"[:36]}
        return token | {
            "country_code": "DE",
            "party_id": args.party_id,
            "contract_id": f"DE-{args.party_id}-{uid}"[:36],
        }

    def b64(token: str) -> str:
        return base64.b64encode(token.encode()).decode()

    def with_encodings(tokens: list[str]) -> list[str]:
        # The package compares versions-endpoint headers undecoded and module headers decoded.
        return [form for token in tokens for form in (token, b64(token))]

    def our_roles(version: str) -> dict[str, Any]:
        details = {"name": "Stand-in eMSP"}
        if version == "2.1.1":
            return {"business_details": details, "party_id": args.party_id, "country_code": "DE"}
        return {
            "roles": [
                {
                    "role": "EMSP",
                    "business_details": details,
                    "party_id": args.party_id,
                    "country_code": "DE",
                }
            ]
        }

    def version_text(version: Any) -> str:
        # The package passes its VersionNumber enum (whose str() is the member's name).
        return str(getattr(version, "value", version))

    class PeerAuthenticator(Authenticator):
        @classmethod
        async def get_valid_token_c(cls) -> list[str]:
            return with_encodings(state["issued"])

        @classmethod
        async def get_valid_token_a(cls) -> list[str]:
            return with_encodings([state["token_a"]] if state["token_a"] else [])

    def module_text(module: Any) -> str:
        return str(getattr(module, "value", module))

    def stored(module: Any) -> dict[str, Any]:
        return state["store"].setdefault(module_text(module), {})

    def record(module: Any, action: str, data: dict, version: str) -> None:
        state["pushes"].append(
            {
                "module": module_text(module),
                "action": action,
                "version": version,
                "id": str(data.get("id") or data.get("uid") or ""),
                "data": data,
            }
        )

    class PeerCrud(Crud):
        @classmethod
        async def get(cls, module: Any, role: Any, id: Any, *args: Any, **kwargs: Any) -> Any:
            version = version_text(kwargs.get("version", "2.2.1"))
            if module == ModuleID.tokens:
                return token_object(str(id), version)  # it knows every token
            if module_text(module) != "credentials":
                return stored(module).get(str(id).lower())
            return {"token": state["issued"][-1], "url": versions_url, **our_roles(version)}

        @classmethod
        async def list(
            cls, module: Any, role: Any, filters: dict, *args: Any, **kwargs: Any
        ) -> Any:
            return [], 0, True

        @classmethod
        async def create(cls, module: Any, role: Any, data: dict, *args: Any, **kwargs: Any) -> Any:
            version = version_text(kwargs.get("version", "2.2.1"))
            if module_text(module) != "credentials":
                # A pushed object, already parsed by the package's model of the version.
                stored(module)[str(data["id"]).lower()] = data
                record(module, "create", data, version)
                return data
            # We (the CPO) registered with the peer: keep our token, answer with a new one.
            state["ours"] = data["credentials"]["token"]
            state["exchanges"].append(
                {"as": "receiver", "version": version, "endpoints": data["endpoints"]}
            )
            state["token_a"] = None
            token = secrets.token_urlsafe(24)
            state["issued"].append(token)
            return {"token": token, "url": versions_url, **our_roles(version)}

        @classmethod
        async def update(
            cls, module: Any, role: Any, data: dict, id: Any, *args: Any, **kwargs: Any
        ) -> Any:
            if module_text(module) != "credentials":
                version = version_text(kwargs.get("version", "2.2.1"))
                stored(module)[str(id).lower()] = data
                record(module, "update", data, version)
                return data
            return await cls.create(module, role, data, *args, **kwargs)

        @classmethod
        async def delete(cls, module: Any, role: Any, id: Any, *args: Any, **kwargs: Any) -> Any:
            state["ours"] = None

        @classmethod
        async def do(cls, module: Any, role: Any, action: Any, *args: Any, **kwargs: Any) -> Any:
            if action != Action.authorize_token:
                return None
            data = kwargs.get("data") or {}
            state["authorizations"].append(
                {"uid": data.get("token_uid"), "location": data.get("location_reference")}
            )
            if args_delay := args_ns.authorize_delay:
                await asyncio.sleep(args_delay)
            uid = str(data.get("token_uid"))
            # A uid that starts with "blocked" is refused; every other one allowed.
            allowed = "BLOCKED" if uid.lower().startswith("blocked") else "ALLOWED"
            return {
                "allowed": allowed,
                "token": token_object(uid, "2.2.1"),
                "authorization_reference": f"{args_ns.party_id}-{len(state['authorizations'])}",
            }

    app = get_application(
        version_numbers=[VersionNumber(v) for v in args.versions.split(",")],
        roles=[RoleEnum.emsp],
        crud=PeerCrud,
        modules=[
            ModuleID.credentials_and_registration,
            ModuleID.locations,
            ModuleID.sessions,
            ModuleID.cdrs,
            ModuleID.tariffs,
            ModuleID.tokens,
        ],
        authenticator=PeerAuthenticator,
    )

    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def maybe_down(request: Request, call_next: Any) -> Any:
        if state["down"] and not request.url.path.startswith("/control/"):
            return JSONResponse({"status_code": 3000, "status_message": "down"}, status_code=503)
        response = await call_next(request)
        if response.status_code == 422:
            state.setdefault("refused", []).append(str(request.url.path))
        return response

    @app.post("/control/down")
    async def set_down(body: dict = Body(...)) -> dict:  # noqa: B008
        state["down"] = bool(body.get("down"))
        return {"down": state["down"]}

    def header(token: str, version: str) -> dict[str, str]:
        return {"Authorization": f"Token {token if version == '2.1.1' else b64(token)}"}

    async def endpoint(
        client: httpx.AsyncClient, cpo_versions: str, token: str, version: str, module: str
    ) -> str:
        versions = await checked(client.get(cpo_versions, headers=header(token, version)))
        url = next(v["url"] for v in versions["data"] if v["version"] == version)
        details = (await checked(client.get(url, headers=header(token, version))))["data"]
        return next(e["url"] for e in details["endpoints"] if e["identifier"] == module)

    async def checked(call: Any) -> dict:
        response = await call
        envelope = response.json()
        if response.status_code != 200 or envelope.get("status_code") != 1000:
            raise HTTPException(
                502, f"{response.request.url}: HTTP {response.status_code} {envelope}"
            )
        return envelope

    @app.post("/control/register")
    async def register(body: dict = Body(...)) -> dict:  # noqa: B008
        """The peer registers with the CPO from its versions URL and the CPO's token A."""
        version = body.get("version", "2.2.1")
        token_b = secrets.token_urlsafe(24)
        state["issued"].append(token_b)  # the CPO calls our versions with it before answering
        async with httpx.AsyncClient(timeout=20) as client:
            url = await endpoint(
                client, body["versions_url"], body["token_a"], version, "credentials"
            )
            credentials = {"token": token_b, "url": versions_url, **our_roles(version)}
            answer = await client.post(
                url, json=credentials, headers=header(body["token_a"], version)
            )
        envelope = answer.json()
        if envelope.get("status_code") != 1000:
            raise HTTPException(502, f"registration refused: {answer.status_code} {envelope}")
        model = Credentials211 if version == "2.1.1" else Credentials221
        try:
            parsed = model(**envelope["data"])
        except ValidationError as error:
            raise HTTPException(502, f"{model.__name__} refused: {error}") from error
        state["ours"] = parsed.token
        state["exchanges"].append({"as": "initiator", "version": version})
        return {
            "token_b": token_b,
            "their_token": parsed.token,
            "answer": envelope["data"],
            "http": answer.status_code,
        }

    @app.post("/control/crawl")
    async def crawl(body: dict = Body(...)) -> dict:  # noqa: B008
        """Fetch every object of a module (locations, tariffs) page by page, following the
        Link headers, each parsed with the package's model of that version."""
        version = body.get("version", "2.2.1")
        module = body.get("module", "locations")
        token = body.get("token") or state["ours"]
        models = {"locations": (Location221, Location211), "tariffs": (Tariff221, Tariff211)}
        model = models[module][1 if version == "2.1.1" else 0]
        pages: list[dict[str, Any]] = []
        ids: list[str] = []
        async with httpx.AsyncClient(timeout=20) as client:
            url: str | None = await endpoint(client, body["versions_url"], token, version, module)
            url = f"{url}?limit={body.get('limit', 10)}"
            while url:
                response = await client.get(url, headers=header(token, version))
                envelope = response.json()
                if envelope.get("status_code") != 1000:
                    raise HTTPException(502, f"GET {url}: {envelope}")
                try:
                    parsed = [model(**item) for item in envelope["data"]]
                except ValidationError as error:
                    raise HTTPException(502, f"{model.__name__} refused: {error}") from error
                ids += [str(item.id) for item in parsed]
                pages.append(
                    {
                        "url": url,
                        "count": len(parsed),
                        "total": response.headers.get("X-Total-Count"),
                        "limit": response.headers.get("X-Limit"),
                        "link": response.headers.get("Link"),
                        "evses": sum(len(getattr(item, "evses", [])) for item in parsed),
                    }
                )
                link = response.headers.get("Link")
                url = link[link.index("<") + 1 : link.index(">")] if link else None
        return {"pages": pages, "ids": ids}

    @app.post("/control/command")
    async def command(body: dict = Body(...)) -> dict:  # noqa: B008
        """Send the CPO a command (its body without response_url: the peer adds its own),
        the CPO's CommandResponse parsed with the package's model of that version."""
        version = body.get("version", "2.2.1")
        kind = body["type"]
        number = str(len(state["commands"]) + 1)
        request = dict(body["body"]) | {"response_url": f"{base}/results/{number}"}
        state["commands"][number] = {"version": version, "type": kind, "results": []}
        async with httpx.AsyncClient(timeout=20) as client:
            url = await endpoint(client, body["versions_url"], state["ours"], version, "commands")
            answer = await client.post(
                f"{url.rstrip('/')}/{kind}", json=request, headers=header(state["ours"], version)
            )
        envelope = answer.json()
        parsed = None
        if envelope.get("status_code") == 1000:
            model = CommandResponse211 if version == "2.1.1" else CommandResponse221
            try:
                parsed = model(**envelope["data"]).dict()
            except ValidationError as error:
                raise HTTPException(502, f"{model.__name__} refused: {error}") from error
        return {
            "number": number,
            "http": answer.status_code,
            "envelope": envelope,
            "parsed": parsed,
        }

    @app.post("/results/{number}")
    async def result(number: str, body: dict = Body(...)) -> dict:  # noqa: B008
        """The CPO's asynchronous result of a command, parsed with the package's model."""
        sent = state["commands"].get(number)
        if sent is None:
            raise HTTPException(404, "no such command")
        model = CommandResponse211 if sent["version"] == "2.1.1" else CommandResult221
        try:
            parsed = model(**body)
        except ValidationError as error:
            sent["results"].append({"invalid": str(error), "body": body})
            return {"status_code": 2001, "timestamp": "2026-01-01T00:00:00Z"}
        sent["results"].append({"result": parsed.result.value, "body": body})
        return {"status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"}

    @app.post("/control/chargingprofile")
    async def chargingprofile(body: dict = Body(...)) -> dict:  # noqa: B008
        """PUT, GET or DELETE on the CPO's chargingprofiles (2.2.1) of a session, with a
        response URL it serves; the ChargingProfileResponse parsed with the package's model."""
        method = body["method"]
        number = str(len(state["commands"]) + 1)
        response_url = f"{base}/profile-results/{number}"
        state["commands"][number] = {"version": "2.2.1", "type": method, "results": []}
        headers = header(state["ours"], "2.2.1")
        async with httpx.AsyncClient(timeout=20) as client:
            url = await endpoint(
                client, body["versions_url"], state["ours"], "2.2.1", "chargingprofiles"
            )
            target = f"{url.rstrip('/')}/{body['session_id']}"
            if method == "PUT":
                request = {"charging_profile": body["profile"], "response_url": response_url}
                answer = await client.put(target, json=request, headers=headers)
            else:
                query = {"response_url": response_url, **body.get("query", {})}
                answer = await client.request(method, target, params=query, headers=headers)
        envelope = answer.json()
        parsed = None
        if envelope.get("status_code") == 1000:
            try:
                parsed = ChargingProfileResponse(**envelope["data"]).dict()
            except ValidationError as error:
                raise HTTPException(502, f"ChargingProfileResponse refused: {error}") from error
        return {
            "number": number,
            "http": answer.status_code,
            "envelope": envelope,
            "parsed": parsed,
        }

    @app.post("/profile-results/{number}")
    async def profile_result(number: str, body: dict = Body(...)) -> dict:  # noqa: B008
        sent = state["commands"].get(number)
        if sent is None:
            raise HTTPException(404, "no such call")
        model = {
            "PUT": ChargingProfileResult,
            "GET": ActiveChargingProfileResult,
            "DELETE": ClearProfileResult,
        }[sent["type"]]
        try:
            parsed = model(**body)
        except ValidationError as error:
            sent["results"].append({"invalid": str(error), "body": body})
            return {"status_code": 2001, "timestamp": "2026-01-01T00:00:00Z"}
        sent["results"].append({"result": parsed.result.value, "body": body})
        return {"status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"}

    @app.get("/control/state")
    async def get_state() -> dict:
        return state

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    sys.exit(main())
