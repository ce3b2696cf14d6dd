"""The partner registry: who receives webhooks from us, where, signed with what, carrying what.

Loaded from a JSON file (``VEIKALS_PARTNERS_FILE``; the local one is
``deploy/partners.local.json``). Secrets are never in the file: each partner names the
environment variables that hold its secrets, current first; during a rotation the previous
secret's variable stays listed until every partner has switched.
"""
from __future__ import annotations

import json
import os
from enum import StrEnum
from importlib.resources import files
from pathlib import Path

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, TypeAdapter

PARTNER_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
# Package data of ``deploy``: found wherever that package is imported from, a checkout or a wheel.
DEFAULT_FILE = Path(str(files("deploy").joinpath("partners.local.json")))


class PartnerKind(StrEnum):
    CARRIER = "carrier"
    ACCOUNTING = "accounting"
    HOSTING = "hosting"
    PSP = "psp"
    EMAIL = "email"
    SMS = "sms"


class MissingSecret(Exception):
    """None of the partner's secret variables is set."""


class Partner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=PARTNER_NAME_PATTERN)
    kind: PartnerKind
    endpoint: AnyHttpUrl
    secret_env: list[str] = Field(min_length=1, description="variables holding the secrets, current first")
    data_categories: list[str] = Field(default_factory=list)
    description: str = ""

    def secrets(self) -> list[str]:
        found = [os.environ[name] for name in self.secret_env if os.environ.get(name)]
        if not found:
            raise MissingSecret(f"partner {self.name!r}: set {' or '.join(self.secret_env)}")
        return found


class PartnerRegistry:
    def __init__(self, partners: list[Partner]) -> None:
        names = [p.name for p in partners]
        if len(set(names)) != len(names):
            raise ValueError("two partners share a name")
        self._partners = {p.name: p for p in partners}

    @classmethod
    def load(cls, path: str | Path | None = None) -> "PartnerRegistry":
        path = Path(path or os.environ.get("VEIKALS_PARTNERS_FILE") or DEFAULT_FILE)
        data = json.loads(path.read_text())
        return cls(TypeAdapter(list[Partner]).validate_python(data["partners"]))

    def get(self, name: str) -> Partner | None:
        return self._partners.get(name)

    def __iter__(self):
        return iter(self._partners.values())
