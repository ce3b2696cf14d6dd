"""A stand-in for the accounts service's token keys: a JWKS on loopback and tokens signed with it."""
from __future__ import annotations

import datetime as dt
import json

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.auth import AUDIENCE, ISSUER


class TokenIssuer:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = "test-key-1"
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.key.public_key()))
        jwks = {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "EdDSA"}]}
        async def serve_jwks(_: web.Request) -> web.Response:
            return web.json_response(jwks)
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", serve_jwks)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def token(self, kind: str = "staff", roles: tuple[str, ...] = ("admin",),
              expires_in: int = 300, subject: str = "5f0c9a52-0d6e-4b7a-9a44-3f1c2b8e7d01",
              token_use: str = "access") -> str:
        now = dt.datetime.now(dt.timezone.utc)
        claims = {"sub": subject, "kind": kind, "roles": list(roles), "token_use": token_use, "iss": ISSUER,
                  "aud": AUDIENCE, "iat": now, "exp": now + dt.timedelta(seconds=expires_in)}
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": self.kid})
