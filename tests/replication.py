"""A real PostgreSQL primary and hot standby (streaming replication) for the replica tests: Debian's
PostgreSQL binaries (the newest under /usr/lib/postgresql), `initdb`, `pg_basebackup -R`, two free ports,
run as the `postgres` user when we are root (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

SETTINGS = """
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 4
hot_standby = on
hot_standby_feedback = on
fsync = off
synchronous_commit = off
full_page_writes = off
"""


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL's bin folder, or None when there is none."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


@dataclass
class Cluster:
    """A primary and its hot standby; `primary_url` and `standby_url` name the database `invoiceloop`."""

    bin: Path
    root: Path
    primary_port: int
    standby_port: int

    @property
    def primary_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.primary_port}/invoiceloop"

    @property
    def standby_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.standby_port}/invoiceloop"

    def run(self, tool: str, *args: str) -> None:
        """A PostgreSQL tool, as the `postgres` user when we are root."""
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self, name: str, port: int) -> None:
        folder = self.root / name
        self.run("pg_ctl", "-D", str(folder), "-l", str(self.root / f"{name}.log"), "-w", "-t", "60",
                 "-o", f"-p {port} -k {self.root}", "start")  # fmt: skip

    def stop(self, name: str, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.root / name), "-m", mode, "-w", "-t", "60", "stop")

    def stop_standby(self) -> None:
        """The standby gone at once, as a crashed machine would be."""
        self.stop("standby", "immediate")

    def start_standby(self) -> None:
        self.start("standby", self.standby_port)


@contextmanager
def primary_and_standby() -> Iterator[Cluster]:
    """A fresh primary with a database `invoiceloop`, and a hot standby cloned from it; both removed after."""
    bin_dir = postgres_bin()
    assert bin_dir is not None, "Debian's postgresql package is needed (the README's test command installs it)"
    root = Path(tempfile.mkdtemp(prefix="invoiceloop-replication-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(bin_dir, root, free_port(), free_port())
    started: list[str] = []
    try:
        cluster.run("initdb", "-D", str(root / "primary"), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync", "--no-instructions")  # fmt: skip
        with open(root / "primary" / "postgresql.conf", "a") as conf:
            conf.write(SETTINGS)
        cluster.start("primary", cluster.primary_port)
        started.append("primary")
        cluster.run("psql", "-h", "127.0.0.1", "-p", str(cluster.primary_port), "-U", "postgres", "-q",
                    "-c", "CREATE DATABASE invoiceloop")  # fmt: skip
        cluster.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(cluster.primary_port), "-U", "postgres",
                    "-D", str(root / "standby"), "-R", "-X", "stream", "-c", "fast", "--no-sync")  # fmt: skip
        cluster.start_standby()
        started.append("standby")
        yield cluster
    finally:
        for name in reversed(started):
            try:
                cluster.stop(name, "immediate")
            except subprocess.CalledProcessError:
                pass  # already stopped by the test
        shutil.rmtree(root, ignore_errors=True)


def wait_for(predicate: object, timeout_s: float = 60.0) -> None:
    """Poll `predicate()` until true (generous: the machine may be loaded)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.1)
