"""The baseline of bench/orders.py: aiohttp reads a JSON body, asyncpg does one INSERT."""
from __future__ import annotations

import argparse
import json
import uuid

import asyncpg
from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    args = parser.parse_args()

    async def start(app: web.Application):
        app["pool"] = pool = await asyncpg.create_pool(args.dsn, min_size=20, max_size=20)
        await pool.execute("CREATE TABLE IF NOT EXISTS bare (id uuid PRIMARY KEY, body jsonb NOT NULL)")
        yield
        await pool.close()

    async def insert(request: web.Request) -> web.Response:
        body = await request.json()
        order_id = uuid.uuid4()
        await request.app["pool"].execute("INSERT INTO bare (id, body) VALUES ($1, $2)", order_id, json.dumps(body))
        return web.json_response({"id": str(order_id)}, status=201)

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.cleanup_ctx.append(start)
    app.router.add_post("/insert", insert)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
