"""HTTP load from `wrk` (C, so the load generator costs little of the machine's cores), shared by the benchmarks."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import redis

# Each request takes the next body (round robin), or with BENCH_PER_THREAD its thread's own body (wrk's thread k,
# counted from 0, takes body k; one thread per connection then), and the next of 62,500 client addresses, so that
# per-address limits see many clients, as they would in life (the server trusts X-Forwarded-For from loopback).
WRK_SCRIPT = """
local bodies = {}
local i = 0
local threads = 0
function setup(thread)
  thread:set("slot", threads)
  threads = threads + 1
end
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local path = os.getenv("BENCH_PATH")
local per_thread = os.getenv("BENCH_PER_THREAD") == "1"
wrk.method = os.getenv("BENCH_METHOD")
wrk.headers["Content-Type"] = "application/json"
if os.getenv("BENCH_KEY") ~= "" then wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY") end
request = function()
  i = i + 1
  wrk.headers["X-Forwarded-For"] = "10.1." .. (i % 250) .. "." .. (math.floor(i / 250) % 250 + 1)
  if #bodies == 0 then return wrk.format(nil, path) end
  local n = i
  if per_thread then n = slot end
  return wrk.format(nil, path, nil, bodies[(n % #bodies) + 1])
end
"""
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str,
    method: str,
    bodies: Sequence[str | bytes],
    connections: int,
    seconds: float,
    key: str = "",
    per_thread: bool = False,
) -> tuple[float, float, int]:
    """(requests/s, p99 ms, non-2xx count) of `method url` with `bodies` (one line of JSON each; none for a GET)
    from `connections` connections for `seconds`, with `key` as the bearer when given. With `per_thread`, wrk runs
    a thread per connection and each sends its own body (connection k body k) instead of taking them in turn."""
    target = urlsplit(url)
    with tempfile.TemporaryDirectory() as tmp:
        script, lines = Path(tmp) / "load.lua", Path(tmp) / "bodies.jsonl"
        script.write_text(WRK_SCRIPT)
        lines.write_bytes(b"".join((b.encode() if isinstance(b, str) else b) + b"\n" for b in bodies))
        env = {
            **os.environ,
            "BENCH_BODIES": str(lines),
            "BENCH_PATH": target.path + (f"?{target.query}" if target.query else ""),
            "BENCH_METHOD": method,
            "BENCH_KEY": key,
            "BENCH_PER_THREAD": "1" if per_thread else "0",
        }
        threads = connections if per_thread else 2
        args = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds:.0f}s",
            "--timeout",
            "30s",
            "--latency",
        ]
        out = subprocess.run(
            [*args, "-s", str(script), url], env=env, capture_output=True, text=True, check=True
        ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, float(value) * UNITS_MS[unit], int(bad[1]) if bad else 0


def empty_redis(url: str) -> None:
    """Empty the bench's own Redis database before a run. The worker queue lives there, and a run that stopped
    early, or whose worker had not caught up (texts to buyers, with `BENCH_PHONES`), leaves jobs that the next
    run's worker would work through on the same cores as what it measures. The limits start empty as well."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
