"""CPU time of a process group, from /proc/<pid>/stat.

A server is a process group (gunicorn's master and workers, granian's
workers, nginx's master and workers); its CPU over a load run is the
difference between two samples of every member's utime + stime. A worker
that exited between the samples still counts: its time moves into its
parent's cutime + cstime once reaped, which the sample includes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ")".
    return text[text.rindex(")") + 2 :].split()


def group_cpu_seconds(pgid: int) -> float:
    """utime + stime (and reaped children's) of every process in group ``pgid``."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = stat_fields(int(entry.name))
        # fields[0] is the state (field 3 of stat): pgrp is field 5, utime 14.
        if fields is None or int(fields[2]) != pgid:
            continue
        with contextlib.suppress(IndexError, ValueError):
            ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / TICKS_PER_SECOND


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (0 once it is gone)."""
    fields = stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND
