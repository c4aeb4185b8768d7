"""Where the machine's CPU goes during a bench step: this process (the projector), PostgreSQL, Redis, the broker,
and the rest (the kernel's threads: write-back, softirq; other processes).

A snapshot sums, per group, every living process's own CPU and that of its children it has reaped (`cutime`,
`cstime`): PostgreSQL backends that exit (a pool closed) count in the postmaster's, spawned projector processes in
this one's. The rest is the machine's busy time (/proc/stat) less the groups. Figures are printed, never asserted.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
# Process name prefix -> group.
GROUPS = (("postgres", "PostgreSQL"), ("redis-server", "Redis"), ("tansu", "broker"))
PROJECTOR = "projector"  # this process and the processes it spawned
OTHER = "kernel and other"


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every process: projectors, PostgreSQL, Redis, broker)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK


def _group_of(pid: int, name: str, parents: dict[int, int]) -> str | None:
    for prefix, group in GROUPS:
        if name.startswith(prefix):
            return group
    own, seen = os.getpid(), 0
    while pid > 1 and seen < 64:  # this process or one of its descendants
        if pid == own:
            return PROJECTOR
        pid, seen = parents.get(pid, 0), seen + 1
    return None


def _processes() -> list[tuple[int, str, int, float]]:
    """(pid, name, parent, CPU seconds of it and its reaped children) of every living process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found.append((int(entry.name), name, int(fields[1]), sum(int(v) for v in fields[11:15]) / TICK))
    return found


@dataclass(frozen=True)
class Snapshot:
    machine: float
    groups: Counter[str]

    @classmethod
    def take(cls) -> Snapshot:
        processes = _processes()
        parents = {pid: parent for pid, _, parent, _ in processes}
        groups: Counter[str] = Counter()
        for pid, name, _, seconds in processes:
            group = _group_of(pid, name, parents)
            if group is not None:
                groups[group] += seconds
        return cls(machine_busy_seconds(), groups)

    def until(self, later: Snapshot, events: int) -> str:
        """The CPU spent from this snapshot to `later`, per event: the machine's, then each group's."""
        spent = {
            group: max(0.0, later.groups[group] - self.groups[group]) for group in (PROJECTOR, *dict(GROUPS).values())
        }
        machine = later.machine - self.machine
        spent[OTHER] = max(0.0, machine - sum(spent.values()))
        parts = ", ".join(f"{group} {1e6 * seconds / events:.1f}" for group, seconds in spent.items())
        return f"whole machine {1e6 * machine / events:.1f} us/event ({parts})"
