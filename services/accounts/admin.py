"""Operator commands for the accounts service.

    python -m services.accounts.admin create-staff --email E --name N --role admin [--role support]

The password is read from ``VEIKALS_STAFF_PASSWORD`` or asked for twice at the terminal. This
is how the first admin comes to be; later admins create staff through ``POST /v1/staff/accounts``.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from pydantic import ValidationError

from services.accounts.domain import Passwords
from services.accounts.schemas import StaffAccountIn
from services.accounts.service import AccountsService, create_staff_account
from services.accounts.settings import AccountsSettings
from shared import db
from shared.config import load_settings


def read_password() -> str:
    if password := os.environ.get("VEIKALS_STAFF_PASSWORD"):
        return password
    first = getpass.getpass("Password for the new staff account: ")
    if getpass.getpass("The same again: ") != first:
        sys.exit("The two passwords differ; nothing was created.")
    return first


async def create_staff(args: argparse.Namespace) -> int:
    try:
        body = StaffAccountIn(name=args.name, email=args.email, password=read_password(), roles=args.role)
    except ValidationError as exc:
        for error in exc.errors():
            print(f"{'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return 2
    settings = load_settings("accounts", AccountsSettings)
    await db.ensure_database(settings.dsn)
    pool = await db.create_pool(settings.dsn)
    try:
        await db.migrate(pool, AccountsService.migration_scopes())
        passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib,
                              settings.argon2_parallelism, 1)
        staff_id = await create_staff_account(pool, passwords, body)
    finally:
        await pool.close()
    if staff_id is None:
        print(f"A staff account with the address {body.email} exists already.", file=sys.stderr)
        return 1
    print(f"Staff account {staff_id} created with roles: {', '.join(sorted(set(body.roles)))}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.accounts.admin", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-staff", help="create a staff account")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--role", action="append", required=True, choices=["support", "accounting", "marketing", "admin"])
    args = parser.parse_args(argv)
    return asyncio.run(create_staff(args))


if __name__ == "__main__":
    sys.exit(main())
