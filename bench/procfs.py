"""Per-process figures read from /proc: CPU time (utime + stime) and resident memory (VmRSS).

CPU time is counted in clock ticks (os.sysconf("SC_CLK_TCK")) and returned in seconds. A snapshot
of every named process plus every `postgres` process on the machine, and of the machine's total
busy time (/proc/stat), is taken at the start and at the end of a measured window; the difference
is what each spent in the window.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from field 3 (state) on; the command name may hold spaces."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def start_ticks(pid: int) -> int:
    fields = _stat_fields(pid)
    return 0 if fields is None else int(fields[19])


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def children(ppid: int) -> list[int]:
    return sorted((pid for pid in all_pids() if parent_pid(pid) == ppid), key=start_ticks)


def postgres_pids() -> list[int]:
    pids = []
    for pid in all_pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres":
                pids.append(pid)
        except OSError:
            continue
    return pids


def machine_busy_seconds() -> float:
    """CPU time all cores spent not idle (user, nice, system, irq, softirq, steal) from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass
class Snapshot:
    named: dict[str, float]
    postgres: dict[int, float]
    machine: float


class Processes:
    """The processes whose CPU is reported: named ones (gateway, catalog, …) and PostgreSQL."""

    def __init__(self, named: dict[str, int], with_postgres: bool) -> None:
        self.named = named
        self.with_postgres = with_postgres

    def columns(self) -> list[str]:
        return [*self.named, *(["postgres"] if self.with_postgres else []), "loadgen", "other"]

    def snapshot(self) -> Snapshot:
        named = {name: cpu_seconds(pid) or 0.0 for name, pid in self.named.items()}
        postgres = {pid: cpu_seconds(pid) or 0.0 for pid in postgres_pids()} if self.with_postgres else {}
        return Snapshot(named, postgres, machine_busy_seconds())

    def spent(self, before: Snapshot, after: Snapshot, loadgen: float) -> dict[str, float]:
        """CPU seconds per process between two snapshots (PostgreSQL summed over its processes;
        one started in between counts from zero), the load generator's, and `other`: what the
        machine spent beyond all of them (anything else running disturbs the figures)."""
        spent = {name: after.named[name] - before.named[name] for name in self.named}
        if self.with_postgres:
            spent["postgres"] = sum(cpu - before.postgres.get(pid, 0.0) for pid, cpu in after.postgres.items())
        spent["loadgen"] = loadgen
        spent["other"] = max(0.0, after.machine - before.machine - sum(spent.values()))
        return spent

    def rss(self) -> dict[str, float]:
        rss = {name: rss_mb(pid) for name, pid in self.named.items()}
        if self.with_postgres:
            rss["postgres"] = sum(rss_mb(pid) for pid in postgres_pids())
        return rss
