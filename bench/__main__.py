"""`make bench` (python -m bench): paystore's capacity at Stripe latency, beside its baselines.

For each scenario (Stripe latency, number of buyers) one run serves, one after the other, with
the same database, stand-in and load: paystore with the chosen worker model, paystore as it was
served before (sync workers, 2 x CPUs + 1), and the bare floor (bench/bare.py, Flask + raw
psycopg) with the chosen worker model. A buyer checks out and then delivers its signed paid
webhook, in a loop. Then pgbench runs the pair's SQL alone: the database's limit.
Prints numbers; asserts nothing. Knobs (environment, or make variables of the same name):
  BENCH_LATENCY_MS=300 BENCH_BUYERS=32  one scenario only (default: 300:32, 1000:128, 0:8 and 0:1)
  BENCH_SCENARIOS=300:32,1000:128,0:8,0:1  latency_ms:buyers list (1000:128: a launch-day burst at a
                                        slow Stripe; buyers honour Retry-After)
  BENCH_WORKER_CLASS=gthread|gevent     worker model of paystore and the floor (default gthread)
  BENCH_WORKERS (CPUs), BENCH_THREADS (the shipped PAYSTORE_THREADS), BENCH_SECONDS (12), BENCH_LOAD_PROCS (2)
  BENCH_ROUNDS (2)                      rounds per scenario: every configuration runs once per round,
                                        in turn, and its figures are pooled over the rounds (a
                                        neighbour's burst then falls on all of them alike)
  BENCH_BASELINE=0                      skip the sync-worker baseline
  BENCH_PGBOUNCER=0                     skip two paystore instances behind PgBouncer (transaction
                                        mode, the same processes in all; webhooks cross instances)
  BENCH_PGBOUNCER_POOL (40)             PgBouncer's server connections (>= checkouts in flight)
  BENCH_INSTRUCTIONS=1                  also count instructions per pair under valgrind (~4 min)
  BENCH_REQUEST_CPU=1                   serve every configuration wrapped by bench/request_cpu.py and
                                        print the thread CPU per checkout and per webhook inside the
                                        workers: where the CPU per pair goes
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sqlalchemy import text

from bench.instructions import instructions_per_pair
from bench.pgbench import pgbench_pairs
from bench.run import Figures, combined, measure, pct
from bench.serve import BARE_APP, PAYSTORE_APP, ServerModel
from paystore.config import Settings
from paystore.db import make_engine
from paystore.devtools.credentials import STRIPE_KEY, TOKEN, WEBHOOK_SECRET
from paystore.devtools.pgbouncer import pgbouncer
from paystore.devtools.postgres import database_source, postgres_server
from paystore.devtools.standin import StripeStandIn
from paystore.migrate import upgrade_to_head

CPUS = os.cpu_count() or 1
env = os.environ.get


def scenarios() -> list[tuple[int, int]]:
    if env("BENCH_LATENCY_MS") or env("BENCH_BUYERS"):
        return [(int(env("BENCH_LATENCY_MS") or 300), int(env("BENCH_BUYERS") or 32))]
    spec = env("BENCH_SCENARIOS") or "300:32,1000:128,0:8,0:1"
    return [(int(a), int(b)) for a, b in (item.split(":") for item in spec.split(","))]


TARGETS = {
    "pairs/s": lambda lat, buyers: ">= 80" if (lat, buyers) == (300, 32) else (
        ">= 1.0 x floor" if (lat == 0 and buyers > 1) or (lat, buyers) == (1000, 128) else ""),
    "webhook p99 ms": lambda lat, buyers: "<= 150" if (lat, buyers) == (300, 32) else (
        "<= 15" if buyers == 1 else "<= floor's" if (lat, buyers) == (1000, 128) else ""),
    "checkouts 503 overloaded": lambda lat, buyers: "0 (connections left)" if (lat, buyers) == (1000, 128) else "",
}


def rows(f: Figures) -> dict[str, str]:
    load = f.load
    non_2xx = sum(load.webhook_errors.values())
    return {
        "pairs/s": f"{f.pairs_per_s:.1f}",
        "checkout p50 / p99 ms": f"{pct(load.checkout_ms, 50):.1f} / {pct(load.checkout_ms, 99):.1f}",
        "webhook p50 / p99 ms": f"{pct(load.webhook_ms, 50):.1f} / {pct(load.webhook_ms, 99):.1f}",
        "webhook p99 ms": f"{pct(load.webhook_ms, 99):.1f}",
        "lock wait p50 / p99 ms": f"{pct(f.lock_wait_ms, 50):.2f} / {pct(f.lock_wait_ms, 99):.2f}",
        "checkouts 503 overloaded": str(load.overloaded),
        "checkouts failed (status: n)": str(load.checkout_errors or 0),
        "anomalies: not completed": str(f.not_completed),
        "anomalies: double transitions": str(f.double_transitions),
        "anomalies: webhooks not 2xx": str(non_2xx if not load.webhook_errors else load.webhook_errors),
        "peak PostgreSQL connections": str(f.peak_connections),
        "worker RSS MB": ", ".join(f"{r:.0f}" for r in f.rss_mb),
        "CPU ms per pair (app + db)": f"{f.cpu_ms_per_pair:.2f}",
        "  of which app workers (kernel)": f"{f.app_cpu_ms_per_pair:.2f} ({f.app_sys_ms_per_pair:.2f})",
        "load side CPU (% of machine)": f"{100 * f.load_cpu_s / (f.seconds * CPUS):.0f} %",
        "PgBouncer CPU ms per pair": f"{f.pooler_cpu_s * 1000 / max(1, f.load.pairs):.2f}" if f.pooler_cpu_s else "",
        **({"thread CPU ms per checkout / webhook": " / ".join(
            f"{ms:.2f}" if (ms := f.request_cpu_ms(path)) is not None else "-"
            for path in ("/checkout", "/webhooks/stripe"))} if f.request_cpu is not None else {}),
    }


def print_table(latency_ms: int, buyers: int, figures: list[Figures], rounds: int) -> None:
    print(f"\n== Stripe latency {latency_ms} ms, {buyers} buyers, {figures[0].seconds:.0f} s measured"
          f" per configuration ({rounds} rounds, interleaved) ==")
    columns = [f"{f.label} ({f.model})" for f in figures] + ["target"]
    table = [rows(f) for f in figures]
    width = max(30, *(len(c) + 2 for c in columns))
    print(f"{'':32}" + "".join(f"{c:>{width}}" for c in columns))
    for name in table[0]:
        target = TARGETS.get(name, lambda *_: "")(latency_ms, buyers)
        print(f"{name:32}" + "".join(f"{t[name]:>{width}}" for t in table) + f"{target:>{width}}")
    floor = next((f for f in figures if f.label == "bare floor"), None)
    ours = figures[0]
    if floor and floor.load.pairs:
        print(f"paystore / floor: pairs/s {ours.pairs_per_s / floor.pairs_per_s:.2f} x, "
              f"CPU per pair {ours.cpu_ms_per_pair / floor.cpu_ms_per_pair:.2f} x")
    pooled = next((f for f in figures if f.label.startswith("2 instances")), None)
    if pooled and ours.load.pairs:
        print(f"2 instances via PgBouncer / paystore direct: pairs/s {pooled.pairs_per_s / ours.pairs_per_s:.2f} x "
              "(same processes in total; webhooks reach the other instance)")


def measure_behind_pgbouncer(url: str, model: ServerModel, pool_size: int, **measure_args) -> Figures:
    """Two paystore instances (masters), together the processes of one, through one PgBouncer."""
    halves = ServerModel(model.worker_class, max(1, model.workers // 2), model.threads)
    # Like for like: an upstream reached through a Unix socket (the embedded server) is compared
    # with a PgBouncer reached through one too; loopback TCP costs both sides more kernel time.
    with pgbouncer(url, pool_size=pool_size, unix_socket="host=/" in url) as pooled_url:
        return measure(f"2 instances via PgBouncer (pool {pool_size})", PAYSTORE_APP, halves,
                       database_url=pooled_url, instances=2, **measure_args)


def main() -> None:
    worker_class = env("BENCH_WORKER_CLASS") or "gthread"
    chosen = ServerModel(worker_class, int(env("BENCH_WORKERS") or CPUS), int(env("BENCH_THREADS") or Settings.threads))
    baseline = ServerModel("sync", 2 * CPUS + 1, 1)
    seconds = float(env("BENCH_SECONDS") or 12)
    rounds = int(env("BENCH_ROUNDS") or 2)
    load_procs = int(env("BENCH_LOAD_PROCS") or 2)
    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"paystore bench: {CPUS} CPUs (load average before the run {load_avg}; everything on this machine), "
          f"database from {database_source()}, Stripe stand-in in this process, buyers in {load_procs} processes")
    print(f"paystore = {chosen} (PAYSTORE_THREADS={chosen.threads}; connections and checkout slots per process from"
          f" the server's budget); baseline = paystore on {baseline} (the old gunicorn.conf.py); bare floor = bench/bare.py")
    with tempfile.TemporaryDirectory() as scratch, postgres_server() as url:
        upgrade_to_head(url)
        engine = make_engine(url, pool_size=3)
        standin = StripeStandIn(WEBHOOK_SECRET).start()
        app_env = {"STRIPE_SECRET_KEY": STRIPE_KEY, "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "PAYSTORE_LOG_LEVEL": "WARNING",
                   "STRIPE_API_BASE": standin.base_url, "PAYSTORE_API_TOKENS": TOKEN}
        log_path = Path(scratch) / "gunicorn.log"
        common = dict(seconds=seconds, load_procs=load_procs, database_url=url, engine=engine, standin=standin,
                      env=app_env, log_path=log_path,
                      request_cpu_dir=Path(scratch) if env("BENCH_REQUEST_CPU") == "1" else None)
        behind_pgbouncer = {k: v for k, v in common.items() if k != "database_url"}
        pgbouncer_pool = int(env("BENCH_PGBOUNCER_POOL") or 40)
        try:
            for latency_ms, buyers in scenarios():
                configs = [("paystore", PAYSTORE_APP, chosen)]
                if env("BENCH_BASELINE", "1") != "0":
                    configs.append(("baseline", PAYSTORE_APP, baseline))
                configs.append(("bare floor", BARE_APP, chosen))
                with_pgbouncer = env("BENCH_PGBOUNCER", "1") != "0" and buyers > 1
                runs: dict[str, list[Figures]] = {}
                for _round in range(rounds):
                    for label, app, model in configs:
                        runs.setdefault(label, []).append(
                            measure(label, app, model, latency_ms=latency_ms, buyers=buyers, **common))
                    if with_pgbouncer:
                        pooled = measure_behind_pgbouncer(url, chosen, pgbouncer_pool, latency_ms=latency_ms,
                                                          buyers=buyers, **behind_pgbouncer)
                        runs.setdefault(pooled.label, []).append(pooled)
                print_table(latency_ms, buyers, [combined(r) for r in runs.values()], rounds)
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE stripe_events, notifications, purchases CASCADE"))
            clients = 8
            if env("BENCH_INSTRUCTIONS") == "1":
                counted = instructions_per_pair(url, engine, standin, app_env,
                                                {"paystore": PAYSTORE_APP, "bare floor": BARE_APP})
                print("\ninstructions per pair in one gthread worker (callgrind, user space; immune to neighbours): "
                      + (counted if isinstance(counted, str) else ", ".join(f"{k} {v:.2f} M" for k, v in counted.items())))
            print(f"\npgbench, the pair's SQL alone ({clients} clients, 10 s): {pgbench_pairs(url, clients, 10)} pairs/s "
                  "(the database's limit on this machine)")
        finally:
            standin.stop()
            engine.dispose()


if __name__ == "__main__":
    main()
