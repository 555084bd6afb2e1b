"""`make bench` end to end with tiny settings, so the instrument cannot rot unnoticed.

Runs scripts/bench.py as a subprocess (the whole stack, the cached gateway, the baseline, wrk and
the asyncio flows) and checks the JSON it writes: every scenario is there with requests and CPU
figures for every process. It asserts no speed. Needs wrk (.ci/run installs it) and PostgreSQL;
under CI=true a missing one is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
ON_CI = os.environ.get("CI") == "true"
SCENARIOS = {
    "baseline#1",
    "product#1",
    "hop#1",
    "baseline#2",
    "product#2",
    "hop#2",
    "list",
    "hop-list",
    "search",
    "categories",
    "cart-read",
    "hop-cart",
    "cart-add",
    "hop-cart-add",
    "healthz",
    "product-cached",
    "checkout-spread",
    "checkout-same",
    "checkout-idle",
}
PROCESSES = {
    "gateway",
    "auth",
    "catalog",
    "cart",
    "orders",
    "payments",
    "gw-cached",
    "baseline",
    "hop-back",
    "hop-mid",
    "hop-front",
    "postgres",
    "loadgen",
    "other",
}
# Which process must have spent CPU in which scenario (proves the pids were found and read).
BUSY = [
    ("baseline#1", "baseline"),
    ("product#1", "gateway"),
    ("product#1", "catalog"),
    ("product#1", "postgres"),
    ("product#1", "loadgen"),
    ("hop#1", "hop-back"),
    ("hop#1", "hop-front"),
    ("hop-list", "hop-back"),
    ("hop-cart", "hop-mid"),
    ("hop-cart", "hop-back"),
    ("hop-cart-add", "hop-mid"),
    ("product-cached", "gw-cached"),
    ("cart-read", "cart"),
    ("cart-add", "loadgen"),
    # (auth is not on the checkout path: the token is verified locally and carries the email)
    ("checkout-spread", "cart"),
    ("checkout-spread", "orders"),
    ("checkout-spread", "payments"),
]


def postgres_answers() -> bool:
    url = os.environ.get("SHOP_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def require(found: bool, what: str) -> None:
    if not found:
        if ON_CI:
            pytest.fail(f"{what} is missing (CI=true: a failure, not a skip)")
        pytest.skip(f"{what} is missing")


@pytest.mark.timeout(240)
def test_bench_runs_every_scenario_and_reports_every_process(tmp_path):
    require(shutil.which("wrk") is not None, "wrk (apt-get install wrk)")
    require(postgres_answers(), "PostgreSQL")
    out = tmp_path / "bench.json"

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.bench",
            "--seconds",
            "1",
            "--warmup",
            "0",
            "--checkouts",
            "20",
            "--connections",
            "4",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["database"] == "PostgreSQL"
    rows = {row["scenario"]: row for row in result["rows"]}
    assert set(rows) == SCENARIOS
    assert set(result["columns"]) == PROCESSES
    for name, row in rows.items():
        assert row["requests"] > 0, name
        assert row["errors"] == 0, (name, row["errors"])
        assert set(row["cpu_ms_per_request"]) == PROCESSES, name
        assert all(value >= 0 for value in row["cpu_ms_per_request"].values()), (name, row["cpu_ms_per_request"])
        assert row["x_baseline"] is not None, name
    for scenario, process in BUSY:
        assert rows[scenario]["cpu_seconds"][process] > 0, (scenario, process)
    assert rows["checkout-spread"]["requests"] == 20
    assert rows["checkout-idle"]["requests"] == 30  # one at a time: the idle machine's latency
    assert set(result["rss_mb"]) >= PROCESSES - {"loadgen", "other"}
    assert all(mb > 0 for mb in result["rss_mb"].values()), result["rss_mb"]
    assert str(out) in completed.stdout
