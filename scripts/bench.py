"""`make bench`: the shop as real processes, measured against a bare baseline on the same machine.

The stack starts as `make run` starts it (scripts/run_local.py) on fresh PostgreSQL databases (the
server on 127.0.0.1:5432 when it answers, else SQLite with --sqlite or when none answers), rate
limits and the gateway's product cache off. Beside it run a second gateway with the product cache
on, bench/baseline.py (FastAPI + one SQL query on the catalog's database) and bench/hop.py (the
same read split into a FastAPI front and a bare gRPC back: the floor of the architecture, with none
of the shop's code, measured beside the baseline in the same A B A B rounds, and the floors of the
list, the cart read and the cart add right after the shop's). Stateless scenarios
cart add and checkout are driven by wrk (an asyncio httpx client only makes the data beforehand:
buyers, carts). Each scenario has a warm-up, then a measured window over which every process's CPU
time is read from /proc.

    make bench ARGS="--seconds 15 --scenarios baseline,search"

Prints one row per scenario: requests/s, p50/p95/p99, errors, ×baseline (the mean of the baseline
runs, measured A B A B with the shop's product by id) and CPU ms per request of every process, then
the RSS of every process; writes all of it as JSON under var/bench/. The bench/ package holds the
parts (see bench/__init__.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import flows, procfs, report, stack, wrk
from bench.wrk import Measurement

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = (
    "baseline",
    "hop",
    "product",
    "list",
    "search",
    "categories",
    "cart-read",
    "cart-add",
    "healthz",
    "product-cached",
    "checkout-spread",
    "checkout-same",
    "checkout-idle",
)
SEARCH_WORDS = ("coffee", "wireless", "lamp", "headphones", "lantern")
WRK_THREADS = 1  # one wrk thread drives tens of thousands of requests/s: cores stay with the stack


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8, help="measured seconds per scenario (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--replicas", type=int, default=1, help="instances of every service (default 1)")
    parser.add_argument("--checkouts", type=int, default=400, help="orders per checkout variant (default 400)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated subset of: {','.join(SCENARIOS)}"
    )
    parser.add_argument("--sqlite", action="store_true", help="embedded SQLite instead of PostgreSQL (no baseline)")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default var/bench/<time>-<sha>.json)")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    if args.checkouts < args.connections:  # wrk sends every connection's first request at once
        parser.error("--checkouts must be at least --connections")
    return args


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def cache_counts(metrics_text: str) -> dict[str, float]:
    """hit/miss totals of shop_gateway_cache_requests_total{cache="product"}; empty when absent."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "shop_gateway_cache_requests_total" and sample.labels.get("cache") == "product":
                counts[sample.labels.get("result", "")] = sample.value
    return counts


class Bench:
    """One run: the processes, the data the scenarios use, and the rows measured so far."""

    def __init__(
        self, args: argparse.Namespace, wrk_path: str, workdir: Path, processes: procfs.Processes, urls: dict[str, str]
    ) -> None:
        self.args = args
        self.wrk_path = wrk_path
        self.workdir = workdir
        self.processes = processes
        self.urls = urls
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.phases: dict[str, float] = {}

    def record(self, scenario: str, label: str, loadgen: str, before: procfs.Snapshot, m: Measurement) -> dict:
        """A measured window's row: `before` is the CPU snapshot taken as it started."""
        cpu = self.processes.spent(before, self.processes.snapshot(), m.loadgen_cpu)
        r = report.row(scenario, label, loadgen, m, cpu)
        self.rows.append(r)
        print(
            f"  {label:<{report.NAME_WIDTH}} {r['requests_per_s']:>9.1f} /s, p99 {r['p99_ms']:.1f} ms, "
            f"{r['errors']} errors {r['error_kinds'] or ''}",
            flush=True,
        )
        return r

    def wrk_scenario(
        self,
        scenario: str,
        label: str,
        target: str,
        items: list[tuple[str, dict[str, str]]],
        after_warmup: Callable[[], None] = lambda: None,
        script: Path | None = None,
    ) -> dict:
        script = script or wrk.write_script(self.workdir, scenario.replace("#", "-"), items)

        def run(seconds: int) -> Measurement:
            return wrk.run(self.wrk_path, self.urls[target], script, seconds, self.args.connections, WRK_THREADS)

        if self.args.warmup > 0:
            run(self.args.warmup)
        after_warmup()
        before = self.processes.snapshot()
        return self.record(scenario, label, "wrk", before, run(self.args.seconds))

    def checkout_scenario(self, scenario: str, label: str, tokens: list[str], connections: int) -> dict:
        """Checkouts by wrk (`wrk.write_checkout_script`), one per buyer: `warmup_checkouts` of
        them unmeasured, then the window of the rest."""
        body = json.dumps(flows.CHECKOUT_BODY)
        buyers = [(token, str(uuid.uuid4())) for token in tokens]
        warm = warmup_checkouts(self.args)

        def run(name: str, window: list[tuple[str, str]]) -> Measurement:
            script = wrk.write_checkout_script(self.workdir, name, window, body)
            return wrk.run(self.wrk_path, self.urls["shop"], script, CHECKOUT_MAX_SECONDS, connections, 1)

        if warm:
            run(f"{scenario}-warm", buyers[:warm])
        before = self.processes.snapshot()
        return self.record(scenario, label, "wrk", before, run(scenario, buyers[warm:]))


# Orders of the idle checkout: one at a time, the latency of a checkout on a machine doing nothing else.
IDLE_CHECKOUTS = 30
# A checkout window ends with its last order; this only bounds a stuck run.
CHECKOUT_MAX_SECONDS = 300


def warmup_checkouts(args: argparse.Namespace) -> int:
    """Checkouts before each checkout window: one per connection (wrk sends every connection's first
    request at once, so a window holds at least that many buyers)."""
    return args.connections if args.warmup > 0 else 0


async def prepare(bench: Bench, http: httpx.AsyncClient) -> dict[str, Any]:
    """Product ids with big stock, guest carts for cart read, buyers with filled carts."""
    args = bench.args
    ids = await flows.product_ids(http)
    await flows.raise_stock(http, stack.ADMIN_EMAIL, stack.ADMIN_PASSWORD, ids)
    data: dict[str, Any] = {"ids": ids}
    if "cart-read" in args.scenarios:
        data["sessions"] = await flows.guest_carts(http, ids, args.connections)
    many = args.checkouts + warmup_checkouts(args)
    if "checkout-spread" in args.scenarios:
        data["spread"] = await flows.buyers(http, [ids[i % len(ids)] for i in range(many)])
    if "checkout-same" in args.scenarios:
        data["same"] = await flows.buyers(http, [ids[0]] * many)
    if "checkout-idle" in args.scenarios:
        idle = IDLE_CHECKOUTS + warmup_checkouts(args)
        data["idle"] = await flows.buyers(http, [ids[i % len(ids)] for i in range(idle)])
    return data


async def run_scenarios(bench: Bench, http: httpx.AsyncClient, data: dict[str, Any]) -> None:
    args, chosen, ids = bench.args, bench.args.scenarios, data["ids"]
    products: list[tuple[str, dict[str, str]]] = [(f"/api/v1/products/{pid}", {}) for pid in ids]
    if "baseline" in chosen and "baseline" in bench.urls:
        for run in (1, 2):
            bench.wrk_scenario(
                f"baseline#{run}",
                f"baseline product by id #{run}",
                "baseline",
                [(f"/products/{pid}", {}) for pid in ids],
            )
            bench.wrk_scenario(f"product#{run}", f"product by id #{run}", "shop", products)
            if "hop" in bench.urls:
                bench.wrk_scenario(
                    f"hop#{run}",
                    f"bare gRPC hop, product by id #{run}",
                    "hop",
                    [(f"/products/{pid}", {}) for pid in ids],
                )
    elif "product" in chosen:
        bench.wrk_scenario("product", "product by id", "shop", products)
    stateless: dict[str, tuple[str, str, list[tuple[str, dict[str, str]]]]] = {
        "list": ("product list (20)", "shop", [("/api/v1/products?pageSize=20", {})]),
        "search": ("search", "shop", [(f"/api/v1/products?q={word}", {}) for word in SEARCH_WORDS]),
        "categories": ("categories", "shop", [("/api/v1/categories", {})]),
        "cart-read": (
            "cart read (3 lines)",
            "shop",
            [("/api/v1/cart", {"X-Session-ID": s}) for s in data.get("sessions", [])],
        ),
    }
    # The floors of two more reads, each measured right after the shop's (bench/hop.py).
    floors: dict[str, tuple[str, str, list[tuple[str, dict[str, str]]]]] = {
        "list": ("hop-list", "bare gRPC hop, list (20)", [("/products?page_size=20", {})]),
        "cart-read": (
            "hop-cart",
            "bare gRPC hops, cart read",
            [("/cart", {"X-Session-ID": s}) for s in data.get("sessions", [])],
        ),
    }
    for scenario, (label, target, items) in stateless.items():
        if scenario in chosen:
            bench.wrk_scenario(scenario, label, target, items)
            if scenario in floors and "hop" in bench.urls:
                bench.wrk_scenario(*floors[scenario][:2], "hop", floors[scenario][2])
    if "cart-add" in chosen:
        bench.wrk_scenario(
            "cart-add", "cart add", "shop", [], script=wrk.write_cart_add_script(bench.workdir, ids, args.connections)
        )
        if "hop" in bench.urls:
            script = wrk.write_cart_add_script(bench.workdir, ids, args.connections, "hop-cart-add", "/cart/items")
            bench.wrk_scenario("hop-cart-add", "bare gRPC hops, cart add", "hop", [], script=script)
    if "healthz" in chosen:
        bench.wrk_scenario("healthz", "gateway alone (/healthz)", "shop", [("/healthz", {})])
    if "product-cached" in chosen:
        product_cached(bench, products)
    checkouts = (
        ("spread", "checkout, different products", args.connections),
        ("same", "checkout, same product", args.connections),
        ("idle", "checkout, one at a time (idle)", 1),
    )
    for variant, label, concurrency in checkouts:
        if f"checkout-{variant}" in chosen:
            bench.checkout_scenario(f"checkout-{variant}", label, data[variant], concurrency)


def product_cached(bench: Bench, products: list[tuple[str, dict[str, str]]]) -> None:
    """Product by id through the second gateway (cache TTL 1 s); hit ratio over the measured window."""

    def counts() -> dict[str, float]:
        return cache_counts(httpx.get(bench.urls["cached-metrics"], timeout=10).text)

    before: dict[str, float] = {}
    r = bench.wrk_scenario(
        "product-cached", "product by id (cached)", "cached", products, after_warmup=lambda: before.update(counts())
    )
    after = counts()
    hits = after.get("hit", 0.0) - before.get("hit", 0.0)
    misses = after.get("miss", 0.0) - before.get("miss", 0.0)
    r["cache_hit_ratio"] = round(hits / (hits + misses), 4) if hits + misses else None
    r["label"] += f", hit {r['cache_hit_ratio']:.0%}" if r["cache_hit_ratio"] is not None else ", hit n/a"


async def measure(bench: Bench) -> None:
    async with flows.client(bench.urls["shop"], bench.args.connections) as http:
        started = time.monotonic()
        data = await prepare(bench, http)
        bench.phases["prepare_s"] = round(time.monotonic() - started, 1)
        print(
            f"data prepared (stock, guest carts, buyers) in {bench.phases['prepare_s']:.0f} s; measuring:", flush=True
        )
        await run_scenarios(bench, http, data)


def start_extras(
    args: argparse.Namespace, named: dict[str, int], urls: dict[str, str], db_urls: dict[str, str] | None, workdir: Path
) -> dict[str, Any]:
    """The cached gateway (when asked for) and the baseline (on PostgreSQL, when asked for)."""
    extras: dict[str, Any] = {}
    if "product-cached" in args.scenarios:
        port = stack.free_port()
        metrics_port = stack.free_port()
        extras["gw-cached"] = stack.start_cached_gateway(
            named["gateway"], port, metrics_port, workdir / "gateway-cached.log"
        )
        urls["cached"] = f"http://127.0.0.1:{port}"
        urls["cached-metrics"] = f"http://127.0.0.1:{metrics_port}/metrics"
        stack.wait_ready(urls["cached"] + "/readyz", extras["gw-cached"], "the cached gateway")
    if "baseline" in args.scenarios and db_urls:
        port = stack.free_port()
        extras["baseline"] = stack.start_baseline(port, db_urls["catalog"], workdir / "baseline.log")
        urls["baseline"] = f"http://127.0.0.1:{port}"
        stack.wait_ready(urls["baseline"] + "/healthz", extras["baseline"], "the baseline")
    if "hop" in args.scenarios and "baseline" in args.scenarios and db_urls:
        back_port, mid_port, front_port = stack.free_port(), stack.free_port(), stack.free_port()
        extras["hop-back"], extras["hop-mid"], extras["hop-front"] = stack.start_hop(
            back_port, mid_port, front_port, db_urls, workdir / "hop.log"
        )
        urls["hop"] = f"http://127.0.0.1:{front_port}"
        stack.wait_ready(urls["hop"] + "/healthz", extras["hop-front"], "the bare gRPC hop")
    return extras


def run(args: argparse.Namespace, wrk_path: str, workdir: Path, db_urls: dict[str, str] | None) -> dict[str, Any]:
    """Starts everything, measures, stops everything; returns what goes into the JSON."""
    shop_port = stack.free_port()
    started = time.monotonic()
    shop = stack.start_shop(workdir / "var", shop_port, args.replicas, db_urls)
    extras: dict[str, Any] = {}
    try:
        urls = {"shop": f"http://127.0.0.1:{shop_port}"}
        stack.wait_ready(urls["shop"] + "/readyz", shop, "the shop (see its logs under the bench's var/log)")
        named = stack.shop_processes(shop)
        extras = start_extras(args, named, urls, db_urls, workdir)
        named.update({name: process.pid for name, process in extras.items()})
        processes = procfs.Processes(named, with_postgres=db_urls is not None)
        bench = Bench(args, wrk_path, workdir, processes, urls)
        bench.phases["start_s"] = round(time.monotonic() - started, 1)
        print(f"stack ready in {bench.phases['start_s']:.0f} s", flush=True)
        if "baseline" in args.scenarios and not db_urls:
            bench.notes.append("baseline skipped: it reads PostgreSQL and this run uses SQLite")
        asyncio.run(measure(bench))
        rss = processes.rss()
        rss["bench"] = procfs.rss_mb(os.getpid())
        return {
            "columns": processes.columns(),
            "rows": bench.rows,
            "rss_mb": rss,
            "notes": bench.notes,
            "phases": bench.phases,
        }
    finally:
        for process in extras.values():
            stack.stop(process)
        stack.stop(shop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    wrk_path = wrk.ensure_wrk()
    created = None if args.sqlite else stack.create_databases()
    db_urls, drop = created if created else (None, lambda: None)
    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    info = {
        "database": "PostgreSQL" if db_urls else "SQLite",
        "replicas": args.replicas,
        "connections": args.connections,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "cores": os.cpu_count(),
        "git_sha": sha,
        "git_dirty": dirty,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(report.header(info), flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="shop-bench-") as tmp:
            result = run(args, wrk_path, Path(tmp), db_urls)
    finally:
        drop()
    info["baseline_requests_per_s"] = report.add_ratios(result["rows"])
    info["total_seconds"] = round(time.monotonic() - started, 1)
    print()
    print(report.header(info))
    print(report.table_head(result["columns"]))
    for r in result["rows"]:
        print(report.table_row(r, result["columns"]))
    print(report.LEGEND)
    print(report.rss_line(result["rss_mb"]))
    for note in result["notes"]:
        print(f"note: {note}")
    path = args.json or ROOT / "var" / "bench" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{sha}.json"
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    report.write_json(path, {**info, "options": options, **result})
    print(f"JSON: {path}  (whole run {info['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
