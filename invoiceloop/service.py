"""The commands that run the service: `run` (everything on one machine), `migrate`, `serve` and `worker`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from stdnum.cn import uscc

from delivery import services as delivery_services
from invoiceloop.app import log_signer
from invoiceloop.embedded import embedded_postgres, embedded_redis, postgres_data_dir
from invoiceloop.errors import CliError
from invoiceloop.metrics import shared_across_processes
from invoiceloop.settings import Settings
from invoiceloop.worker import run_worker, serve_and_work
from invoicing import db, services
from invoicing.keys import write_private


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Apply every migration not applied yet, in order."""
    try:
        result = asyncio.run(db.migrate_url(settings.require_database_url()))
    except db.MigrationChanged as exc:
        raise CliError(str(exc)) from None
    for name in result.applied:
        print(f"applied {name}")
    print(f"{len(result.applied)} applied, {len(result.already)} already applied")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """The HTTP service under uvicorn (each worker process builds the app from the environment)."""
    import uvicorn

    settings.require_database_url()
    with shared_across_processes(args.workers):
        uvicorn.run(
            "invoiceloop.app:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="info",
            access_log=False,
        )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """The arq worker until SIGINT or SIGTERM."""
    return asyncio.run(run_worker(settings))


@contextlib.contextmanager
def _services_for(settings: Settings) -> Iterator[Settings]:
    """Settings whose DATABASE_URL and REDIS_URL point at running servers: the configured ones, or
    embedded ones started in the data folder and stopped on exit."""
    with contextlib.ExitStack() as stack:
        if not settings.database_url:
            print(f"starting embedded PostgreSQL in {postgres_data_dir(settings.data_dir)} ...")
            settings = replace(settings, database_url=stack.enter_context(embedded_postgres(settings.data_dir)))
        if settings.redis is None:
            print(f"starting embedded Redis in {settings.data_dir} ...")
            settings = replace(settings, redis_url=stack.enter_context(embedded_redis(settings.data_dir)))
        yield settings


async def _create_demo(settings: Settings) -> dict[str, Any]:
    conn = await db.connect(settings.require_database_url())
    try:
        body = "91440101MA5CXKYQ1"
        issuer, key = await services.create_issuer(
            conn,
            name="广州示例科技有限公司",
            tax_id=body + uscc.calc_check_digit(body),
            region="4401",
            address="广州市天河区天河路 1 号",
            phone="+862012345678",
        )
        operator = await delivery_services.create_demo_operator(conn)
    finally:
        await conn.close()
    return {"issuer_id": issuer.id, "issuer_api_key": key, **operator}


def _demo(settings: Settings) -> dict[str, Any]:
    """The demo issuer and postal operator, created once; their keys are kept in the data folder (owner-only)
    so each run can print them again."""
    path = settings.data_dir / "demo.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    demo = asyncio.run(_create_demo(settings))
    write_private(path, json.dumps(demo, indent=2).encode())
    return demo


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """Migrate, create the demo accounts once, then serve the API and run the worker until Ctrl-C or SIGTERM
    (what systemd and container runtimes send): either stops the embedded servers before the process ends."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Python's default for SIGTERM ends the process at once, skipping every `finally` (the embedded servers
    # would outlive it); as KeyboardInterrupt it unwinds like Ctrl-C. uvicorn takes both signals while it
    # serves and raises them again, into this handler, once it has shut down.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with _services_for(settings) as settings:
            _serve(args, settings)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("stopped")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    cmd_migrate(args, settings)
    demo = _demo(settings)
    base = f"http://{args.host}:{args.port}"
    print("\ninvoiceloop is running")
    print(f"  API docs     {base}/schema")
    print(f"  verify page  {base}/verify")
    print(f"  demo issuer  {demo['issuer_id']}  key {demo['issuer_api_key']}")
    print(f"  demo postal operator {demo['operator_id']}  key {demo['operator_api_key']}")
    print(f"  public log   {base}/v1/log/checkpoint  verifier key {log_signer(settings).verifier_key}")
    print(f"  witness it:  invoiceloop log witness --url {base} --state witness.json --key <the verifier key>")
    print(f"  try: curl -H 'Authorization: Bearer {demo['issuer_api_key']}' {base}/v1/invoices")
    print("Ctrl-C stops the service and the embedded servers (so does SIGTERM).\n")
    asyncio.run(serve_and_work(settings, args.host, args.port))
