"""What the bench prints and keeps: the header, one table row per scenario, the RSS of every
process, and the JSON file (var/bench/<UTC time>-<git sha>.json by default) with all of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.wrk import Measurement

NAME_WIDTH = 32


def row(scenario: str, label: str, loadgen: str, m: Measurement, cpu: dict[str, float]) -> dict[str, Any]:
    """A scenario's figures; CPU as milliseconds per successful request, per process."""
    per = max(m.ok, 1)
    return {
        "scenario": scenario,
        "label": label,
        "loadgen": loadgen,
        "requests": m.ok,
        "errors": m.errors,
        "error_kinds": m.error_kinds,
        "seconds": round(m.seconds, 3),
        "requests_per_s": round(m.ok / m.seconds, 1) if m.seconds else 0.0,
        "p50_ms": round(m.p50_ms, 2),
        "p95_ms": round(m.p95_ms, 2),
        "p99_ms": round(m.p99_ms, 2),
        "cpu_seconds": {name: round(seconds, 3) for name, seconds in cpu.items()},
        "cpu_ms_per_request": {name: round(seconds * 1000 / per, 3) for name, seconds in cpu.items()},
    }


def add_ratios(rows: list[dict[str, Any]]) -> float | None:
    """×baseline of every row, against the mean requests/s of the baseline runs."""
    baseline = [r["requests_per_s"] for r in rows if r["scenario"].startswith("baseline")]
    mean = sum(baseline) / len(baseline) if baseline else None
    for r in rows:
        r["x_baseline"] = round(r["requests_per_s"] / mean, 3) if mean else None
    return mean


def header(info: dict[str, Any]) -> str:
    return (
        f"the shop on {info['database']}, {info['replicas']} replica(s) per service, "
        f"{info['connections']} connections, {info['seconds']} s per scenario after {info['warmup']} s warm-up, "
        f"{info['cores']} cores, git {info['git_sha']}{' (dirty)' if info['git_dirty'] else ''}, all on 127.0.0.1"
    )


def table_head(columns: list[str]) -> str:
    cpu = " ".join(f"{c:>{max(len(c), 7)}}" for c in columns)
    return (
        f"{'scenario':<{NAME_WIDTH}} | {'req/s':>8} | {'p50 ms':>7} | {'p95 ms':>7} | {'p99 ms':>7} | "
        f"{'errors':>6} | {'×base':>6} | CPU ms/req: {cpu}"
    )


def table_row(r: dict[str, Any], columns: list[str]) -> str:
    ratio = f"{r['x_baseline']:.3f}" if r.get("x_baseline") is not None else "n/a"
    cpu = " ".join(f"{r['cpu_ms_per_request'].get(c, 0.0):>{max(len(c), 7)}.3f}" for c in columns)
    return (
        f"{r['label']:<{NAME_WIDTH}} | {r['requests_per_s']:>8.1f} | {r['p50_ms']:>7.2f} | {r['p95_ms']:>7.2f} | "
        f"{r['p99_ms']:>7.2f} | {r['errors']:>6} | {ratio:>6} | {'':11} {cpu}"
    )


LEGEND = (
    "CPU ms/req: CPU time per successful request (per order for checkout) in the measured window; "
    "postgres = every postgres process on the machine; loadgen = wrk (every window, checkout included); "
    "other = the machine's busy time beyond all of these: kernel work done for them "
    "(loopback networking, writeback of commits: highest for writes) plus anything else running"
)


def rss_line(rss: dict[str, float]) -> str:
    return "RSS MB after the bench: " + ", ".join(f"{name} {mb:.0f}" for name, mb in rss.items())


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
