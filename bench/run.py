"""One measured configuration: an app served by gunicorn, the stand-in at a given latency, and
buyers running checkout + webhook pairs for a fixed time. Returns the figures, prints nothing."""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
from sqlalchemy import Engine, text

from bench import request_cpu
from bench.load import BuyerResults, run_buyers
from bench.serve import Instance, ServerModel, serve_instances
from paystore.devtools.credentials import TOKEN, WEBHOOK_SECRET
from paystore.devtools.postgres import reset_database
from paystore.devtools.standin import StripeStandIn


@dataclass
class Figures:
    label: str
    model: ServerModel
    latency_ms: int
    buyers: int
    seconds: float
    load: BuyerResults
    lock_wait_ms: list[float]
    not_completed: int
    double_transitions: int
    peak_connections: int
    rss_mb: list[float]
    app_cpu_s: float
    db_cpu_s: float
    load_cpu_s: float
    app_sys_s: float
    pooler_cpu_s: float = 0.0  # PgBouncer's process, when there is one (not in load_cpu_s)
    request_cpu: request_cpu.Totals | None = None  # BENCH_REQUEST_CPU=1 only

    def request_cpu_ms(self, path: str) -> float | None:
        """Thread CPU per request of `path` inside the workers, in ms (BENCH_REQUEST_CPU=1)."""
        cpu_s, n = (self.request_cpu or {}).get(path, (0.0, 0))
        return cpu_s * 1000 / n if n else None

    @property
    def pairs_per_s(self) -> float:
        return self.load.pairs / self.seconds

    @property
    def cpu_ms_per_pair(self) -> float:
        return (self.app_cpu_s + self.db_cpu_s) * 1000 / max(1, self.load.pairs)

    @property
    def app_cpu_ms_per_pair(self) -> float:
        return self.app_cpu_s * 1000 / max(1, self.load.pairs)

    @property
    def app_sys_ms_per_pair(self) -> float:
        return self.app_sys_s * 1000 / max(1, self.load.pairs)


def combined(runs: list[Figures]) -> Figures:
    """Several runs of one configuration as one: totals over the summed time, samples pooled."""
    first = runs[0]
    load = BuyerResults()
    for run in runs:
        load.merge(run.load)
    return Figures(
        label=first.label, model=first.model, latency_ms=first.latency_ms, buyers=first.buyers,
        seconds=sum(r.seconds for r in runs), load=load, lock_wait_ms=[w for r in runs for w in r.lock_wait_ms],
        not_completed=sum(r.not_completed for r in runs), double_transitions=sum(r.double_transitions for r in runs),
        peak_connections=max(r.peak_connections for r in runs), rss_mb=max((r.rss_mb for r in runs), key=sum),
        app_cpu_s=sum(r.app_cpu_s for r in runs), db_cpu_s=sum(r.db_cpu_s for r in runs),
        load_cpu_s=sum(r.load_cpu_s for r in runs), app_sys_s=sum(r.app_sys_s for r in runs),
        pooler_cpu_s=sum(r.pooler_cpu_s for r in runs),
        request_cpu=None if any(r.request_cpu is None for r in runs)
        else request_cpu.added_up(r.request_cpu for r in runs if r.request_cpu is not None),
    )


def pct(samples: list[float], p: int) -> float:
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return ""


class _Sampler:
    """Peak connections to the bench database (pg_stat_activity) and the CPU of every process
    that serves a pair: gunicorn workers, their PostgreSQL backends, the load side."""

    def __init__(self, engine: Engine, instances: list[Instance]) -> None:
        self.engine, self.instances = engine, instances
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.engine.connect() as conn:
            while not self._stop.wait(0.05):
                n = conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                     " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"))
                conn.rollback()  # pg_stat_activity is a snapshot per transaction: take a new one
                self.peak = max(self.peak, int(n or 0))

    def backends(self) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.scalars(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                          " AND (application_name LIKE 'paystore:%' OR application_name LIKE 'bare:%')")))

    def cpu(self) -> tuple[float, float, float, float, float]:
        """Seconds of CPU so far: app workers, their backends, load side (this process and its
        children), the app workers' system (kernel) share, and PgBouncer (a child of this
        process when it runs; not counted in the load side)."""
        def total(procs: list[psutil.Process], kernel_only: bool = False) -> float:
            s = 0.0
            for proc in procs:
                try:
                    times = proc.cpu_times()
                    s += times.system if kernel_only else times.user + times.system
                except psutil.Error:
                    pass
            return s

        workers = [w for i in self.instances for w in i.workers()]
        backends = [psutil.Process(pid) for pid in self.backends() if psutil.pid_exists(pid)]
        me = psutil.Process()
        mine = [me, *me.children(recursive=True)]
        pooler = [p for p in mine if _name(p) == "pgbouncer"]
        load = [p for p in mine if p not in pooler]
        return total(workers), total(backends), total(load), total(workers, True), total(pooler)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(
    label: str, app: str, model: ServerModel, *, latency_ms: int, buyers: int, seconds: float, load_procs: int,
    database_url: str, engine: Engine, standin: StripeStandIn, env: dict[str, str], log_path: Path, instances: int = 1,
    request_cpu_dir: Path | None = None,
) -> Figures:
    """With `request_cpu_dir`, the app is served wrapped by bench.request_cpu, whose totals the
    workers write to a fresh directory under it when they exit."""
    reset_database(engine)
    standin.reset()
    standin.faults.create_delay_s = latency_ms / 1000
    totals_dir = None
    if request_cpu_dir is not None:
        totals_dir = Path(tempfile.mkdtemp(dir=request_cpu_dir))
        app, env = request_cpu.WRAPPED[app], {**env, request_cpu.DIRECTORY_ENV: str(totals_dir)}
    with serve_instances(app, database_url, env, model, log_path, instances) as served:
        urls = [i.url for i in served]
        warmup = 2.0 + 0.5 * load_procs  # process start, connections, pools
        start_at = time.time() + warmup
        stop_at = start_at + seconds
        procs = min(load_procs, buyers)
        shares = [buyers // procs + (1 if n < buyers % procs else 0) for n in range(procs)]
        with _Sampler(engine, served) as sampler, ProcessPoolExecutor(
            procs, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            futures = [pool.submit(run_buyers, n, urls, share, TOKEN, WEBHOOK_SECRET, start_at, stop_at)
                       for n, share in enumerate(shares)]
            time.sleep(max(0.0, start_at - time.time()))
            before = sampler.cpu()
            time.sleep(max(0.0, stop_at - time.time()))
            after = sampler.cpu()
            load = BuyerResults()
            for future in futures:
                load.merge(future.result())
        rss = sorted(w.memory_info().rss / 2**20 for i in served for w in i.workers())
    with engine.connect() as conn:
        ids = {"ids": load.purchase_ids}
        waits = list(conn.scalars(
            text("SELECT lock_wait_ms FROM stripe_events WHERE purchase_id = ANY(CAST(:ids AS uuid[]))"), ids
        ))
        not_completed = conn.scalar(
            text("SELECT count(*) FROM purchases WHERE id = ANY(CAST(:ids AS uuid[])) AND status <> 'completed'"), ids
        )
        doubles = conn.scalar(text("SELECT count(*) FROM (SELECT purchase_id FROM stripe_events WHERE outcome = 'completed'"
                                   " GROUP BY purchase_id HAVING count(*) > 1) d"))
    return Figures(
        label=label, model=model, latency_ms=latency_ms, buyers=buyers, seconds=seconds, load=load,
        lock_wait_ms=[w for w in waits if w is not None], not_completed=int(not_completed or 0),
        double_transitions=int(doubles or 0), peak_connections=sampler.peak, rss_mb=rss,
        app_cpu_s=after[0] - before[0], db_cpu_s=after[1] - before[1], load_cpu_s=after[2] - before[2],
        app_sys_s=after[3] - before[3], pooler_cpu_s=after[4] - before[4],
        request_cpu=request_cpu.read_totals(totals_dir) if totals_dir else None,
    )
