"""Access tokens: JWTs signed with the service's Ed25519 key and the JWKS that publishes it.

``python -m services.accounts.tokens`` prints a new private key (PEM) for
``VEIKALS_ACCOUNTS_JWT_SIGNING_KEY``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from shared.auth import AUDIENCE, ISSUER


class InvalidSigningKey(ValueError):
    """The signing key setting is missing or is not an Ed25519 key."""


def new_signing_key() -> str:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


def _jwk(public: Ed25519PublicKey) -> dict:
    jwk = json.loads(OKPAlgorithm.to_jwk(public))
    # The RFC 7638 thumbprint names the key, so a rotated key gets a new kid by itself.
    members = json.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"),
                         sort_keys=True)
    kid = jwt.utils.base64url_encode(hashlib.sha256(members.encode()).digest()).decode()
    return {**jwk, "kid": kid, "use": "sig", "alg": "EdDSA"}


class SigningKeys:
    def __init__(self, private_pem: str, previous_public_pems: list[str] = ()) -> None:
        if not private_pem.strip():
            raise InvalidSigningKey("VEIKALS_ACCOUNTS_JWT_SIGNING_KEY is not set: make a key with "
                            "`python -m services.accounts.tokens`")
        try:  # an environment file may carry the PEM on one line, its breaks written as \n
            key = serialization.load_pem_private_key(private_pem.replace("\\n", "\n").encode(), password=None)
            previous = [serialization.load_pem_public_key(p.replace("\\n", "\n").encode())
                        for p in previous_public_pems]
        except ValueError as exc:
            raise InvalidSigningKey(f"a token key could not be read: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey) or not all(
                isinstance(p, Ed25519PublicKey) for p in previous):
            raise InvalidSigningKey("token keys must be Ed25519")
        self._key = key
        current = _jwk(key.public_key())
        self.kid = current["kid"]
        self.jwks = {"keys": [current, *(_jwk(p) for p in previous)]}
        self.key_set = jwt.PyJWKSet.from_dict(self.jwks)

    def access_token(self, *, subject: uuid.UUID, kind: str, roles: list[str],
                     session: uuid.UUID, ttl: int) -> tuple[str, dt.datetime]:
        now = dt.datetime.now(dt.timezone.utc)
        expires = now + dt.timedelta(seconds=ttl)
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": str(subject), "kind": kind,
                  "roles": roles, "sid": str(session), "token_use": "access",
                  "iat": now, "exp": expires, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.kid}), expires


if __name__ == "__main__":
    print(new_signing_key(), end="")
