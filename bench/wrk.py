"""wrk, the compiled HTTP load generator used for every scenario: the stateless ones, cart add and
checkout (their state made beforehand or in Lua).

Cart add (`write_cart_add_script`) keeps its state in Lua: a pool of guest sessions (UUIDs made in
Lua) each receives one add per round, products in turn, and after ADDS_PER_CART rounds the pool is
replaced by fresh carts, so no cart reaches a line or quantity limit and no two requests to one
cart are in flight together (the pool is much larger than the connections). Checkout
(`write_checkout_script`) walks a list of buyers made beforehand and stops after a count.

`ensure_wrk()` finds wrk or installs the Debian package (apt-get update first) and stops the bench
with a clear message when it cannot. `run()` writes a Lua script that rotates through a list of
(path, headers) per request and prints its summary as one JSON line in done(): requests, duration,
errors (socket errors and statuses of 400 and above) and latency percentiles. wrk's own CPU time
(utime + stime) comes from the kernel's accounting when it exits (wait4), the same counters
/proc/<pid>/stat shows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = "BENCH_JSON "
STOPPED = "BENCH_STOPPED"
TIMEOUT_SECONDS = 10

LUA = """
local items = %(items)s
local counter = 0

request = function()
  counter = counter + 1
  local item = items[(counter %% #items) + 1]
  return wrk.format("GET", item[1], item[2])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d,'
    .. ' "timeout": %%d, "p50_us": %%.1f, "p95_us": %%.1f, "p99_us": %%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


CART_ADD_LUA = """
local ids = %(ids)s
local pool_size = %(pool_size)d
local adds_per_cart = %(adds_per_cart)d
local sessions = {}
local counter = 0

local function uuid4()
  return string.format("%%08x-%%04x-4%%03x-%%04x-%%04x%%08x", math.random(0, 0x7fffffff), math.random(0, 0xffff),
    math.random(0, 0xfff), math.random(0x8000, 0xbfff), math.random(0, 0xffff), math.random(0, 0x7fffffff))
end

local function refill()
  for i = 1, pool_size do sessions[i] = uuid4() end
end

init = function(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
  refill()
end

request = function()
  local round = math.floor(counter / pool_size)
  local slot = counter %% pool_size
  if slot == 0 and round > 0 and round %% adds_per_cart == 0 then refill() end
  counter = counter + 1
  local product = ids[((slot + round) %% #ids) + 1]
  local body = '{"productId": "' .. product .. '", "quantity": 1}'
  return wrk.format("POST", "%(path)s",
    {["Content-Type"] = "application/json", ["X-Session-ID"] = sessions[slot + 1]}, body)
end
"""
ADDS_PER_CART = 10


# Checkout: every buyer (a token with a filled cart, and its own Idempotency-Key) places one order,
# in turn. Once all are sent, a connection that comes free idles (delay) instead of sending more,
# and after the last answer the script prints STOPPED: the window ends as the last order does,
# like a fixed set of checkouts, with nothing cut off and nothing extra.
CHECKOUT_LUA = """
local buyers = %(buyers)s
local body = %(body)s
local sent = 0
local answered = 0

-- wrk calls request() once more than it sends (it checks the script's request first), so the
-- buyers are taken in a circle and a connection idles once #buyers + 1 were made.
delay = function()
  if sent > #buyers then return 3600000 end
  return 0
end

request = function()
  sent = sent + 1
  local buyer = buyers[((sent - 1) %% #buyers) + 1]
  return wrk.format("POST", "/api/v1/orders", {["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. buyer[1], ["Idempotency-Key"] = buyer[2]}, body)
end

response = function(status, headers, body)
  answered = answered + 1
  if answered == #buyers then
    -- wrk's main thread sleeps out -d whatever a thread does: the bench sees this line and sends
    -- SIGINT, on which wrk stops at once and prints its summary (done() below).
    io.write("%(stopped)s\\n")
    io.flush()
    wrk.thread:stop()
  end
end
"""


@dataclass
class Measurement:
    """One measured window of any load generator."""

    ok: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    loadgen_cpu: float
    error_kinds: dict[str, int] = field(default_factory=dict)  # e.g. {"status": 3, "timeout": 1}


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing; installing the Debian package (apt-get update, apt-get install wrk) …", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env, stdout=subprocess.DEVNULL)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"make bench needs wrk and could not install it ({exc}); "
            "install it yourself (Debian/Ubuntu: apt-get install wrk)"
        ) from exc
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("make bench needs wrk: apt-get install wrk ran but no wrk is on PATH")
    return found


def lua_string(value: str) -> str:
    return json.dumps(value)  # ASCII paths, header names and UUIDs: JSON quoting is valid Lua


def lua_items(items: list[tuple[str, dict[str, str]]]) -> str:
    rows = []
    for path, headers in items:
        header_table = ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
        rows.append(f"{{{lua_string(path)}, {{{header_table}}}}}")
    return "{\n  " + ",\n  ".join(rows) + "\n}"


def write_script(directory: Path, name: str, items: list[tuple[str, dict[str, str]]]) -> Path:
    path = directory / f"{name}.lua"
    path.write_text(LUA % {"items": lua_items(items), "marker": MARKER})
    return path


def write_cart_add_script(
    directory: Path,
    product_ids: list[str],
    connections: int,
    name: str = "cart-add",
    url_path: str = "/api/v1/cart/items",
) -> Path:
    path = directory / f"{name}.lua"
    ids = "{" + ", ".join(lua_string(pid) for pid in product_ids) + "}"
    done = LUA[LUA.index("done = function") :]
    path.write_text(
        CART_ADD_LUA
        % {"ids": ids, "pool_size": max(64, 8 * connections), "adds_per_cart": ADDS_PER_CART, "path": url_path}
        + done % {"marker": MARKER}
    )
    return path


def write_checkout_script(directory: Path, name: str, buyers: list[tuple[str, str]], body: str) -> Path:
    """`buyers`: (access token, Idempotency-Key) each, one order each; run it with one thread."""
    path = directory / f"{name}.lua"
    rows = ", ".join(f"{{{lua_string(token)}, {lua_string(key)}}}" for token, key in buyers)
    done = LUA[LUA.index("done = function") :]
    path.write_text(
        CHECKOUT_LUA % {"buyers": "{" + rows + "}", "body": lua_string(body), "stopped": STOPPED}
        + done % {"marker": MARKER}
    )
    return path


def run(wrk: str, base_url: str, script: Path, seconds: int, connections: int, threads: int) -> Measurement:
    """One wrk run of `seconds` (whole seconds: wrk's resolution)."""
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        f"--timeout={TIMEOUT_SECONDS}s",
        "-s",
        str(script),
        base_url,
    ]
    output = script.with_suffix(".out")
    with output.open("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        # Reaped here rather than by Popen so the kernel's rusage of wrk comes with it.
        status, usage = _wait_or_interrupt(process, output)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}: {text.strip()}")
    return parse(text, usage.ru_utime + usage.ru_stime)


def _wait_or_interrupt(process: subprocess.Popen, output: Path) -> tuple[int, Any]:
    """wrk's exit status and rusage; a script that printed STOPPED gets SIGINT (wrk then ends at
    once with its summary instead of sleeping out its -d)."""
    interrupted = False
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            return status, usage
        if not interrupted and STOPPED in output.read_text():
            process.send_signal(signal.SIGINT)
            interrupted = True
        time.sleep(0.01)


def parse(text: str, cpu: float) -> Measurement:
    lines = [line for line in text.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise RuntimeError(f"wrk printed no summary: {text.strip()}")
    summary = json.loads(lines[-1][len(MARKER) :])
    kinds = {kind: summary[kind] for kind in ("status", "connect", "read", "write", "timeout") if summary[kind]}
    return Measurement(
        ok=summary["requests"] - summary["status"],
        errors=sum(kinds.values()),
        seconds=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p95_ms=summary["p95_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        loadgen_cpu=cpu,
        error_kinds=kinds,
    )
