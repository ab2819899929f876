"""Fifty visitors on one server: what a crowd gets from ``make run`` on two cores.

Each visitor is one Streamlit session over the app's own WebSocket protocol
(:mod:`devtools.visitor`; fifty Chromium pages would not fit two cores), on loopback only, in
bounded number (at most :data:`MAX_VISITORS`) and bounded time (a deadline for the whole crowd).
Visitors arrive spread over :data:`ARRIVAL_S` seconds and pause a few seconds between actions,
as a person reading the plots does. Roles, by visitor number:

* **reader** (most): opens the app, types a sentence of their own on the Overview, opens the
  Attention page, moves the block slider twice, types another sentence;
* **job** (every fourth): types a sentence, opens "What flows into [CLS]?", and starts value
  zeroing or the faithfulness scoreboard - background jobs that queue behind each other
  (``CLSVIZ_MAX_JOBS``, default 1) - then waits, its page showing its place in the queue, until
  the result or a message;
* **upload** (every tenth): opens "Could any token do?", uploads a corpus of its own (60 rows)
  and runs the probe on it; the corpus is embedded through the same queue, then probed.

Measured: every interaction of a visitor not waiting on a job (page opened, sentence typed,
slider moved: request -> ``script_finished``), whose p95 is compared with the same interactions
of one visitor alone on the same warm server just before; the server's peak resident memory
(the server and its job worker, sampled every half second); the places in the queue the job
visitors saw; and what each visitor ended with: its result, a clear message, or nothing (lost).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from benchmarks.inputs import fresh_sentence
from benchmarks.results import FIGURES, Collector
from benchmarks.timing import Settings, percentile
from devtools.visitor import run_coroutine

__all__ = ["MAX_VISITORS", "CrowdResult", "Outcome", "crowd", "measure_visitors", "role", "run_crowd"]

MAX_VISITORS = 100
"""The most sessions one crowd may open (the load is bounded, whatever the caller asks)."""
ARRIVAL_S = 30.0
THINK_S = (3.0, 8.0)
"""Seconds a visitor pauses between actions (uniform), as a person reading the plots."""
DEADLINE_S = 1200.0
"""The whole crowd must be done by then; a visitor still waiting counts as lost."""
MEMORY_BUDGET_GB = FIGURES["visitors_50_peak_rss_gb"].target
"""The server's memory budget (cache 4 GB, the bundled model twice - server and job worker -,
Python and Streamlit): the target of the peak resident memory, 6 GB."""
_QUEUED = re.compile(r"Queued\\?: (\d+) jobs? ahead of you")  # (a colon may come escaped for Markdown)
_STATUS = re.compile(r"Queued\\?: \d+ jobs? ahead of you|Starting…|\(\d+ s\)$")
"""A job's place on its page: queued (how many ahead), starting, or running (seconds so far)."""
OVERVIEW, ATTENTION, MIXING, PROBE = "", "Attention", "What_flows_in", "Any_token"
PROBE_BUTTON = "any_token.run"
"""The button that runs the probe on "Could any token do?"."""


def role(index: int) -> str:
    """Visitor ``index``'s role: every tenth (from the 5th) uploads, every fourth (from the 3rd)
    runs a job, the others read."""
    if index % 10 == 4:
        return "upload"
    if index % 4 == 2:
        return "job"
    return "reader"


@dataclass
class Outcome:
    """What one visitor did and got: seconds of its ``interactive`` steps (those a lone visitor
    makes in the idle baseline: the app opened, a sentence typed, the Attention page, a slider),
    of its ``heavy`` ones (opening a page that computes evidence as it opens, an upload read) and
    of its ``waits`` for a job, the places in the queue (``queued``: jobs ahead) and the job status lines (``status``)
    its page showed, exceptions that reached its page. ``ended``: "result", "message" (a clear
    message instead of a result) or "lost" (neither by the deadline; ``note`` says where it stood)."""

    name: str
    role: str
    interactive: list[float] = field(default_factory=list)
    heavy: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    ended: str = "lost"
    note: str = ""


@dataclass
class CrowdResult:
    """One crowd: its visitors' outcomes, the idle baseline's latencies and the server's peak memory."""

    outcomes: list[Outcome]
    idle: list[float]
    peak_rss_bytes: int
    seconds: float
    idle_cpu: tuple[float, float] = (0.0, 0.0)
    crowd_cpu: tuple[float, float] = (0.0, 0.0)
    """CPU seconds (the server process, its job workers) used during the idle baseline and the crowd."""

    @property
    def interactive(self) -> list[float]:
        return [t for o in self.outcomes for t in o.interactive]

    @property
    def lost(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ended == "lost" or o.exceptions]


def _loopback(url: str) -> None:
    if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the crowd only visits a server on this machine (loopback); {url} is not")


async def _timed(outcome: Outcome, coroutine, into: str = "interactive"):
    """Await one of the visitor's runs and note its seconds under ``into``."""
    run = await coroutine
    getattr(outcome, into).append(run.seconds)
    return run


def _saw(visitor, outcome: Outcome) -> None:
    outcome.exceptions += [e for e in visitor.exceptions if e not in outcome.exceptions]
    outcome.queued += [int(m.group(1)) for t in visitor.progress_seen if (m := _QUEUED.search(t))]
    outcome.status += [t for t in visitor.progress_seen if _STATUS.search(t)]
    visitor.progress_seen.clear()


async def _type(visitor, outcome: Outcome, sentence: str, check: bool) -> None:
    await _timed(outcome, visitor.rerun({"sidebar.sentences": sentence}))
    _saw(visitor, outcome)
    if check and f"1. {sentence}" not in visitor.texts():  # the visitor's own sentence, not another's
        raise AssertionError(f"{outcome.name} typed {sentence!r} but its page shows {visitor.texts()[:6]}")


async def _reader(visitor, outcome: Outcome, rng: random.Random, think, sentences) -> None:
    await _type(visitor, outcome, sentences[0], check=True)
    await asyncio.sleep(rng.uniform(*think))
    await _timed(outcome, visitor.rerun(page=ATTENTION))
    for layer in rng.sample(range(1, 6), 2):
        await asyncio.sleep(rng.uniform(*think))
        await _timed(outcome, visitor.rerun({"attention.layer": layer}))
    await asyncio.sleep(rng.uniform(*think))
    await _type(visitor, outcome, sentences[1], check=False)
    _saw(visitor, outcome)
    outcome.ended = "result" if visitor.count("plotly_chart") else "lost"


def _message(visitor) -> str | None:
    errors = visitor.alerts("ERROR") + [w for w in visitor.alerts("WARNING") if "cancel" in w or "lost" in w]
    return errors[0] if errors else None


async def _wait_for(visitor, outcome: Outcome, done, timeout: float) -> None:
    """Poll the visitor's job panel until ``done`` or a message; record the places in the queue."""
    start = time.perf_counter()

    def finished(v) -> bool:
        _saw(v, outcome)
        return done(v) or _message(v) is not None

    ok = await visitor.wait_until(finished, timeout)
    outcome.waits.append(time.perf_counter() - start)
    if done(visitor):
        outcome.ended = "result"
    elif _message(visitor):
        outcome.ended, outcome.note = "message", _message(visitor)
    else:
        outcome.note = f"no result after {time.perf_counter() - start:.0f} s (waited: {ok})"


async def _job(
    visitor, outcome: Outcome, rng: random.Random, think, sentences, index: int, timeout: float
) -> None:
    await _type(visitor, outcome, sentences[0], check=True)
    await asyncio.sleep(rng.uniform(*think))
    await _timed(outcome, visitor.rerun(page=MIXING), "heavy")
    await asyncio.sleep(rng.uniform(*think))
    if index % 8 == 2:  # value zeroing, then its figures
        await _timed(outcome, visitor.rerun({"mixing.method": "value zeroing"}), "heavy")
        await asyncio.sleep(rng.uniform(*think))
        await _timed(outcome, visitor.rerun(trigger="analysis.mixing.value_zeroing.start"), "waits")
        await _wait_for(visitor, outcome, lambda v: v.has_chart("mixing.cls_row"), timeout)
    else:  # the faithfulness scoreboard
        await _timed(outcome, visitor.rerun(trigger="analysis.mixing.scoreboard.start"), "waits")
        await _wait_for(visitor, outcome, lambda v: v.has_chart("mixing.ranking"), timeout)


def upload_csv(index: int, rows: int = 60) -> bytes:
    """A corpus of ``rows`` sentences of visitor ``index``'s own (nothing cached), two topics."""
    lines = ["text,topic"] + [
        f"{fresh_sentence(100_000 + index * rows + i)},{'rain' if i % 2 else 'sun'}" for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


async def _upload(visitor, outcome: Outcome, rng: random.Random, think, index: int, timeout: float) -> None:
    """Upload a corpus on "Could any token do?" and run the probe: its vectors are embedded
    through the job queue (the page shows its place), then probed."""
    await _timed(outcome, visitor.rerun(page=PROBE), "heavy")
    await asyncio.sleep(rng.uniform(*think))
    await _timed(outcome, visitor.rerun({"any_token.corpus.source": "Upload a file"}), "heavy")
    await asyncio.sleep(rng.uniform(*think))
    name = f"visitor-{index}.csv"
    await _timed(outcome, visitor.upload("any_token.corpus.file", name, upload_csv(index)), "heavy")
    if not any(name in t for t in visitor.texts()):
        outcome.note = f"the upload is not shown: {visitor.texts()[:8]}"
        return
    # The vectors are embedded through the queue; the probe's button comes once they are there.
    await _wait_for(visitor, outcome, lambda v: v.has_widget(PROBE_BUTTON), timeout)
    if outcome.ended != "result":
        return
    outcome.ended = "lost"
    await asyncio.sleep(rng.uniform(*think))
    await _timed(outcome, visitor.rerun(trigger=PROBE_BUTTON), "waits")
    await _wait_for(visitor, outcome, lambda v: v.count("plotly_chart") > 0, timeout)


async def visit(
    url: str,
    index: int,
    *,
    think=THINK_S,
    arrival: float = 0.0,
    timeout: float = DEADLINE_S,
    seed: int = 0,
    part: str | None = None,
) -> Outcome:
    """Visitor ``index`` of a crowd: arrives after ``arrival`` seconds, plays ``part`` (default
    its :func:`role`)."""
    from devtools.visitor import Visitor

    rng = random.Random(seed * 1000 + index)
    outcome = Outcome(f"visitor {index}", part or role(index))
    sentences = [fresh_sentence(seed * 10_000 + index * 2 + k) for k in range(2)]
    await asyncio.sleep(arrival)
    try:
        async with Visitor(url, timeout=timeout) as visitor:
            await _timed(outcome, visitor.rerun(page=OVERVIEW))
            await asyncio.sleep(rng.uniform(*think))
            if outcome.role == "reader":
                await _reader(visitor, outcome, rng, think, sentences)
            elif outcome.role == "job":
                await _job(visitor, outcome, rng, think, sentences, index, timeout)
            else:
                await _upload(visitor, outcome, rng, think, index, timeout)
            _saw(visitor, outcome)
    except Exception as exc:  # a timeout included: recorded as lost, with the reason
        outcome.ended, outcome.note = "lost", f"{type(exc).__name__}: {exc}"[:300]
    return outcome


async def idle_visitor(url: str, seed: int, think=(0.5, 1.0)) -> list[float]:
    """One reader alone: the interactive latencies a crowd is compared with."""
    outcome = await visit(url, 1, think=think, seed=seed)
    if outcome.ended != "result":
        raise RuntimeError(f"the idle visitor failed: {outcome.note}")
    return outcome.interactive


async def crowd(
    url: str,
    visitors: int,
    *,
    seed: int = 0,
    think=THINK_S,
    arrival: float = ARRIVAL_S,
    deadline: float = DEADLINE_S,
    parts: Sequence[str] | None = None,
) -> list[Outcome]:
    """``visitors`` sessions at once (see the module docstring), all done or cut at ``deadline``;
    ``parts`` gives each visitor's role instead of :func:`role`."""
    _loopback(url)
    if not 1 <= visitors <= MAX_VISITORS:
        raise ValueError(f"a crowd has 1 to {MAX_VISITORS} visitors, not {visitors}")
    parts = list(parts) if parts is not None else [role(i) for i in range(visitors)]
    rng = random.Random(seed)
    tasks = [
        asyncio.create_task(
            visit(
                url,
                i,
                think=think,
                arrival=rng.uniform(0, arrival),
                timeout=deadline,
                seed=seed,
                part=parts[i],
            )
        )
        for i in range(visitors)
    ]
    done, pending = await asyncio.wait(tasks, timeout=deadline + arrival)
    for task in pending:
        task.cancel()
    outcomes = []
    for i, task in enumerate(tasks):
        if task in done:
            outcomes.append(task.result())
        else:
            outcomes.append(
                Outcome(f"visitor {i}", parts[i], note=f"still busy at the {deadline:.0f} s deadline")
            )
    return outcomes


class MemorySampler(threading.Thread):
    """The peak of the resident memory of a process group (the server and its job worker),
    sampled every ``every`` seconds until :meth:`stop`."""

    def __init__(self, pgid: int, every: float = 0.5):
        super().__init__(name="rss-sampler", daemon=True)
        self.pgid, self.every, self.peak = pgid, every, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, group_resident_bytes(self.pgid))
            self._stop_event.wait(self.every)

    def stop(self) -> int:
        self._stop_event.set()
        self.join(timeout=10)
        return self.peak


def _group_pids(pgid: int) -> list[int]:
    """The processes now in process group ``pgid`` (the server and its job workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except OSError:  # gone since the listing
                continue
    return pids


def group_resident_bytes(pgid: int) -> int:
    """Resident bytes of every process in process group ``pgid``, summed."""
    from devtools.browser import resident_bytes

    total = 0
    for pid in _group_pids(pgid):
        try:
            total += resident_bytes(pid)
        except (OSError, StopIteration, ValueError):
            continue
    return total


def group_cpu_seconds(pgid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by process ``pgid`` (the server) and by the other
    processes now in its process group (its job workers), from ``/proc/<pid>/stat``."""
    tick = os.sysconf("SC_CLK_TCK")
    server = others = 0
    for pid in _group_pids(pgid):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                after_name = fh.read().rsplit(")", 1)[1].split()
            used = int(after_name[11]) + int(after_name[12])  # utime, stime (fields 14, 15)
        except (OSError, ValueError, IndexError):
            continue
        if pid == pgid:
            server += used
        else:
            others += used
    return server / tick, others / tick


def _spent(before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
    # A worker replaced meanwhile takes its CPU seconds along: the workers' share is then a lower bound.
    return after[0] - before[0], max(0.0, after[1] - before[1])


def run_crowd(
    server,
    visitors: int,
    *,
    seed: int = 0,
    think=THINK_S,
    arrival: float = ARRIVAL_S,
    deadline: float = DEADLINE_S,
    idle_rounds: int = 2,
    parts: Sequence[str] | None = None,
) -> CrowdResult:
    """On the running ``server`` (:func:`devtools.browser.streamlit_process`): the idle baseline
    (one reader alone, ``idle_rounds`` times), then the crowd, with the server's memory sampled."""
    pgid = server.process.pid
    idle, cpu_start = [], group_cpu_seconds(pgid)
    for r in range(idle_rounds):
        idle += run_coroutine(idle_visitor(server.url, seed=seed * 100 + 90 + r))
    cpu_idle = group_cpu_seconds(pgid)
    sampler = MemorySampler(pgid)
    sampler.start()
    start = time.perf_counter()
    try:
        outcomes = run_coroutine(
            crowd(
                server.url, visitors, seed=seed, think=think, arrival=arrival, deadline=deadline, parts=parts
            )
        )
    finally:
        peak = sampler.stop()
    seconds = time.perf_counter() - start
    return CrowdResult(
        outcomes, idle, peak, seconds, _spent(cpu_start, cpu_idle), _spent(cpu_idle, group_cpu_seconds(pgid))
    )


async def prime(url: str) -> None:
    """Open every page the crowd visits once, so what a running server has loaded and cached is
    there (the job worker's model too, through one value zeroing), as on a server in use."""
    from devtools.visitor import Visitor

    async with Visitor(url, timeout=DEADLINE_S) as visitor:
        for page in (OVERVIEW, ATTENTION, PROBE, MIXING):
            await visitor.rerun(page=page)
        await visitor.rerun({"mixing.method": "value zeroing"})
        await visitor.rerun(trigger="analysis.mixing.value_zeroing.start")
        if not await visitor.wait_until(lambda v: v.has_chart("mixing.cls_row"), DEADLINE_S):
            raise RuntimeError(f"priming the server failed: {visitor.texts()[-5:]}")


def measure_visitors(settings: Settings, out: Collector) -> None:
    """``settings.runs`` crowds of 50 (quick: 8) on one server started as ``make run`` does."""
    from devtools.browser import streamlit_process

    visitors = settings.pick(50, 8)
    results = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        streamlit_process(Path(tmp) / "server.log", env={"CLSVIZ_STATE_DIR": tmp}) as server,
    ):
        run_coroutine(prime(server.url))
        for run in range(settings.runs):
            results.append(run_crowd(server, visitors, seed=run + 1))
            out.checkpoint()
    ratios = [percentile(r.interactive, 0.95) / percentile(r.idle, 0.95) for r in results]
    roles = {name: sum(role(i) == name for i in range(visitors)) for name in ("reader", "job", "upload")}
    ahead = [max((q for o in r.outcomes for q in o.queued), default=0) for r in results]
    load = os.getloadavg()[0]
    context = (
        f"{visitors} visitors over the WebSocket protocol ({roles['reader']} readers, {roles['job']} starting "
        f"a value-zeroing or scoreboard job, {roles['upload']} uploading a 60-row corpus), arriving over "
        f"{ARRIVAL_S:.0f} s and pausing {THINK_S[0]:g}-{THINK_S[1]:g} s between actions; one server as make run "
        f"starts it, caches warm; load average {load:.1f} at the end"
    )
    out.add(
        "visitors_50_interactive_p95_ratio",
        ratios,
        f"p95 of the interactions of visitors not waiting on a job (page opened, sentence typed, slider moved) / "
        f"p95 of the same interactions of one visitor alone just before; {context}",
    )
    out.add(
        "visitors_50_interactive_p95_s",
        [percentile(r.interactive, 0.95) for r in results],
        "p95 of those interactions in the crowd (request -> script finished)",
    )
    out.add(
        "visitors_idle_interactive_p95_s",
        [percentile(r.idle, 0.95) for r in results],
        "p95 of the same interactions, one visitor alone on the same warm server",
    )
    out.add(
        "visitors_50_heavy_p95_s",
        [percentile([t for o in r.outcomes for t in o.heavy], 0.95) for r in results],
        "p95 in the crowd of the steps that compute evidence as the page opens ('What flows into [CLS]?' with "
        "its measures and attributions, the probe page, an upload read); not in the ratio",
    )
    out.add(
        "visitors_50_peak_rss_gb",
        [r.peak_rss_bytes / 2**30 for r in results],
        f"peak resident memory of the server and its job worker during the crowd (budget {MEMORY_BUDGET_GB:g} GB)",
    )
    out.add(
        "visitors_50_lost",
        [len(r.lost) for r in results],
        "visitors whose page showed neither their result nor a clear message by the deadline, or an exception",
    )
    out.add(
        "visitors_50_max_jobs_ahead",
        ahead,
        f"the longest queue a job visitor saw on its page ('Queued: N jobs ahead of you'); {roles['job'] + roles['upload']} "
        "visitors queue work, each session at most CLSVIZ_SESSION_JOBS",
    )
    out.add(
        "visitors_50_minutes",
        [r.seconds / 60 for r in results],
        "wall minutes from the first arrival to the last visitor done",
    )
    cores = os.cpu_count() or 1
    per_interaction = [r.idle_cpu[0] / max(1, len(r.idle)) for r in results]
    out.add(
        "visitors_idle_server_cpu_per_interaction_s",
        per_interaction,
        "CPU seconds the server process spent per interaction of the lone visitor (its page runs, the WebSocket "
        "traffic): what one interaction costs the one Python process every session shares",
    )
    out.add(
        "visitors_50_cpu_busy_share",
        [sum(r.crowd_cpu) / (r.seconds * cores) for r in results],
        f"CPU seconds of the server and its job worker during the crowd / ({cores} cores x the crowd's wall "
        "seconds): 1 means both cores busy the whole time",
    )
    out.add(
        "visitors_50_server_cpu_share",
        [r.crowd_cpu[0] / r.seconds for r in results],
        "CPU seconds of the server process alone during the crowd / the crowd's wall seconds (cores' worth: "
        "one Python process holding the GIL for its page runs cannot use much more than 1)",
    )
    out.context["visitors"] = {
        "per_run": [
            {
                "lost": [f"{o.name} ({o.role}): {o.note}" for o in r.lost],
                "messages": [o.note for o in r.outcomes if o.ended == "message"],
                "median_wait_s": statistics.median([w for o in r.outcomes for w in o.waits] or [0]),
            }
            for r in results
        ]
    }
