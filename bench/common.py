"""What every benchmark shares: statistics, markdown rows, machine facts, and a stack on free ports."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness import Stack


def log(message: str) -> None:
    """Progress goes to stderr, so stdout is only the tables."""
    print(f"  [bench] {message}", file=sys.stderr, flush=True)


# --- statistics ----------------------------------------------------------------------------------


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p90(samples: Sequence[float]) -> float:
    """The 90th percentile (nearest rank); with few samples that is close to the maximum."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered)) - 1))]


def duration(seconds: float) -> str:
    """A duration in the unit that reads best: µs, ms or s."""
    if seconds != seconds:  # NaN: nothing was measured
        return "–"
    magnitude = abs(seconds)
    if magnitude < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    if magnitude < 1.0:
        return f"{seconds * 1e3:.2f} ms" if magnitude < 0.1 else f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


@dataclass
class Row:
    """One line of a result table: a measurement, or a value derived from others (n = "derived")."""

    what: str
    median: float
    p90: float | None = None
    n: int | str = ""
    how: str = ""

    def cells(self) -> list[str]:
        return [self.what, duration(self.median), "" if self.p90 is None else duration(self.p90),
                str(self.n), self.how]

    @classmethod
    def of(cls, what: str, samples: Sequence[float], how: str = "", per: int = 1) -> Row:
        """Median and p90 of `samples`, each divided by `per` (e.g. rounds per task)."""
        if not samples:
            return cls(what, float("nan"), None, 0, f"{how} (no samples: see the log)")
        scaled = [s / per for s in samples]
        return cls(what, median(scaled), p90(scaled) if len(scaled) >= 5 else None, len(scaled), how)


def table(rows: Sequence[Row]) -> str:
    head = ["what", "median", "p90", "n", "how"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


# --- the machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu_ticks() -> list[int]:
    """user nice system idle iowait irq softirq steal, in ticks, summed over all CPUs."""
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def cpu_busy(seconds: float = 1.0) -> tuple[float, float]:
    """(busy, steal) as shares of all CPUs over the next `seconds`, from /proc/stat.

    Called while the benchmark itself sleeps, it says how much other processes (and other
    guests of the hypervisor) are using the machine.
    """
    before = _cpu_ticks()
    time.sleep(seconds)
    spent = [b - a for a, b in zip(before, _cpu_ticks())]
    total = sum(spent) or 1
    idle = spent[3] + spent[4]  # idle + iowait
    return (total - idle) / total, spent[7] / total


def _stalled_us() -> tuple[int, int] | None:
    """Pressure stall totals (µs some task waited for CPU, for IO), or None without PSI."""
    try:
        return tuple(int(Path(f"/proc/pressure/{kind}").read_text().split("total=")[1].split()[0])
                     for kind in ("cpu", "io"))  # type: ignore[return-value]
    except (OSError, IndexError, ValueError):
        return None


class CpuShare:
    """How the CPUs were shared while a block ran: this benchmark's whole process tree (stack
    included, counted exactly by a cgroup v1 cpuacct group it joins) against everyone else,
    and how long runnable tasks waited for a CPU or for IO (pressure stall information)."""

    CPUACCT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self) -> None:
        self.group: Path | None = self.CPUACCT / f"bench-{os.getpid()}"
        self.summary = ""

    def __enter__(self) -> CpuShare:
        assert self.group is not None
        try:
            self.group.mkdir(exist_ok=True)
            (self.group / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            self.group = None  # no cgroup v1 cpuacct here (or no root): report the total only
        self.ticks, self.ours = _cpu_ticks(), self._usage_ns()
        self.stalled, self.started = _stalled_us(), time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        spent = [b - a for a, b in zip(self.ticks, _cpu_ticks())]
        ours_ns = self._usage_ns() - self.ours
        total = sum(spent) or 1
        tick_ns = 1e9 / os.sysconf("SC_CLK_TCK")
        busy = (total - spent[3] - spent[4]) / total
        if self.group is not None:
            ours = ours_ns / tick_ns / total
            self.summary = (f"while it ran, the CPUs were {busy:.0%} busy: {ours:.0%} this benchmark, "
                            f"{max(busy - ours, 0):.0%} other processes, steal {spent[7] / total:.0%}")
            try:
                (self.CPUACCT / "cgroup.procs").write_text(str(os.getpid()))
                self.group.rmdir()
            except OSError:
                pass  # a straggler is still in it; the empty group is harmless
        else:
            self.summary = f"while it ran, the CPUs were {busy:.0%} busy (steal {spent[7] / total:.0%})"
        stalled = _stalled_us()
        if stalled is not None and self.stalled is not None:
            elapsed_us = (time.monotonic() - self.started) * 1e6
            cpu, io = ((b - a) / elapsed_us for a, b in zip(self.stalled, stalled))
            self.summary += f"; some task was waiting for a CPU {cpu:.0%} of the time, for IO {io:.0%}"

    def _usage_ns(self) -> int:
        return int((self.group / "cpuacct.usage").read_text()) if self.group is not None else 0


def wait_for_quiet(max_wait_s: float, busy_below: float = 0.2) -> str:
    """Wait (up to `max_wait_s`) until other processes leave the CPUs mostly idle; say how busy they were."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy, steal = cpu_busy()
        if busy < busy_below or time.monotonic() >= deadline:
            break
        log(f"machine busy ({busy:.0%} of the CPUs used by others); waiting for it to quieten")
    note = f"other processes used {busy:.0%} of the CPUs (steal {steal:.0%}) in the second before this part"
    if busy >= busy_below:
        note += " — **a busy machine: every number below is inflated**"
    return note


def machine() -> str:
    """The lines every result starts with: when, on what, and how busy the machine already was."""
    return "\n".join([
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, Linux {platform.release()}",
        f"- Python {platform.python_version()}; load average at start {load_average()}",
    ])


# --- places and processes ------------------------------------------------------------------------


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    """A fresh private directory, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


BENCH_APP = "bench.bench_app:app"


@contextmanager
def running_stack(root: Path, script: str, env: Mapping[str, str] | None = None) -> Iterator[Stack]:
    """The product plus the Bench service (bench/bench_app.py), with the scripted LLM playing `script`."""
    stack = Stack(root / "stack", f"bench.scripts:{script}", env=env, app=BENCH_APP)
    started = time.perf_counter()
    with stack:
        log(f"stack up in {time.perf_counter() - started:.1f} s (logs in {stack.logs})")
        try:
            yield stack
        except BaseException:
            print(stack.log_tails(), file=sys.stderr)
            raise


def call_ok(stack: Stack, service: str, key: str | None, handler: str, body: object = None,
            timeout: float = 60.0) -> object:
    """Call a handler through the ingress; anything but 200 is a broken benchmark."""
    status, answer = stack.call(service, key, handler, body, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"{service}/{key}/{handler} answered {status}: {answer}")
    return answer
