"""The log path: inference.logged from Kafka into ClickHouse through monitoring, from a backlog and live,
with PII redaction in the producing side and monitoring's drift job and alert rules running.

What is compared (each phase on a fresh broker and a fresh ClickHouse folder, in the same run):

- baseline, the raw pipeline: a plain aiokafka producer sends the events as logged, unredacted; a raw
  aiokafka consumer in its own process parses each message as the event, builds monitoring's row and
  inserts into ClickHouse (chdb, the same engine and migrations, so the same materialized views) in
  batches of up to 5,000, committing after each insert. No redaction, no drift, no alerts.
- platform: the producer applies serving's Redactor (``llmops.serving.settings.Settings().redactor()``,
  what InferenceLogWriter applies) to each prompt and completion before publishing, as serving does;
  monitoring runs as its own process (as ``make up`` starts it) with its default configuration: one
  consumer per topic, every table, commit after the insert, dedup on event_id, retries, DLQ, the loop
  controller (idle without policies), plus the drift job and the alert rules on short intervals so that
  their reads compete with the writes during the measurement (see MONITORING_ENV; each of those
  variables may be overridden from the environment).

Redaction happens where serving logs each answer, at serving's request rate (tens of answers a second
per engine here), not on the log path: in both phases the platform's events are redacted as serving
logs them, before the clock starts, so what is stored is what serving publishes (placeholders
included), and the clock measures the path from the topic to ClickHouse. The redaction's own rate
on one core is printed apart, against the rate a serving process logs at.

The events are realistic: prompts and completions are the real text snippets of
``tests/data/pii_sample.jsonl`` (about half carry personal data), each prompt made unique by a suffix (as
live prompts mostly are: the drift job's vector cache then helps only across its runs), with varied
token counts and timings,
``occurred_at`` spread over the two hours before they are produced, so that the drift job's current
window (the last hour) and reference (the hour before) both hold events, and the alert window (the last
15 minutes, default) holds some.

- backlog: ``LLMOPS_BENCH_LOGPATH_EVENTS`` events (default 250,000: enough for the measured part to
  hold drift runs; with 100,000 it lasted about 6 s, less than the first run needs to start) are on
  the topic before the consumer starts; the rate is events over the time from the consumer being
  assigned the topic's partitions (the baseline: its rebalance listener; monitoring: its log line,
  since it drains the backlog while its other consumers still join, before it reports SERVING) to
  the last one stored.
- live: the consumer is ready first (the baseline: assigned; monitoring: SERVING), then the same
  number of events is produced as fast as one producer can; the rate is events over the time from
  the first send to the last one stored.

The drift runs are counted from drift_results (reports of source 'schedule' computed during the
measurement), the alert runs from the alerts they raised (alerts_v; the cooldown is 1 s, so each run
raises its alerts again), both through monitoring's Query RPC; failed runs from monitoring's log.
``LLMOPS_BENCH_LOGPATH_LOGS=folder`` keeps monitoring's logs of both phases there.

Each mode runs ``LLMOPS_BENCH_LOGPATH_ROUNDS`` rounds (default 3), the baseline then the platform in
each, on fresh folders; the machine's speed drifts between phases (the same baseline measured from
17,000 to 25,700 events/s in one session), so each round's ratio is printed and the goal is checked on
the median. Goal: at least 0.75x in both.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import multiprocessing
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from llmops.cli.local import LocalPlatform
from llmops.contracts import topics
from llmops.contracts.events import InferenceLogged
from llmops.monitoring.alerts import PII_PLACEHOLDER_REGEX
from llmops.testing.platform import caught_up, committed_offset, end_offset, make_platform, query_monitoring

EVENTS = int(os.environ.get("LLMOPS_BENCH_LOGPATH_EVENTS", "250000"))
ROUNDS = int(os.environ.get("LLMOPS_BENCH_LOGPATH_ROUNDS", "3"))
BATCH = 5_000
GROUP = "llmops-monitoring.inference"
ALERTS_GROUP = "llmops-monitoring.alerts"
GOAL = 0.75
# FastStream's line (llmops.<service>.kafka logger) once a consumer joined its group and got partitions.
_ASSIGNED = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(?P<ms>\d{3}) .*assigned to partitions: .*'"
    + re.escape(topics.INFERENCE_LOGGED)
    + "'",
    re.MULTILINE,
)
MODEL = "smollm2"
SPAN_SECONDS = 7200.0  # occurred_at of the events: spread over the two hours before they are produced
DRIFT_WAIT_SECONDS = 180  # after the measurement, for the drift run then in flight to write its results
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "pii_sample.jsonl"

# Monitoring's configuration for the platform phases: its defaults, plus the drift job and the alert
# rules every 2 s (from the end of one run to the next) over windows that hold the benchmark's events.
# The job switches are forced on; the rest may be overridden from the environment.
_FORCED_ENV = {"LLMOPS_MONITORING_DRIFT_ENABLED": "true", "LLMOPS_MONITORING_ALERT_ENABLED": "true"}
MONITORING_ENV = _FORCED_ENV | {
    name: os.environ.get(name, default)
    for name, default in {
        "LLMOPS_MONITORING_DRIFT_INTERVAL_SECONDS": "2",
        # The embedding model loads before monitoring consumes (a one-off of start-up, not counted),
        # so that the measured drift runs are the steady ones: sample, embed the new prompts, compare.
        "LLMOPS_MONITORING_DRIFT_PRELOAD": "true",
        "LLMOPS_MONITORING_DRIFT_WINDOW_SECONDS": "3600",
        "LLMOPS_MONITORING_DRIFT_REFERENCE_SECONDS": "3600",
        "LLMOPS_MONITORING_DRIFT_MODELS": MODEL,
        "LLMOPS_MONITORING_ALERT_INTERVAL_SECONDS": "2",
        "LLMOPS_MONITORING_ALERT_COOLDOWN_SECONDS": "1",
        # The live phase produces 250,000 events of real text (about 250 MB) faster than any consumer
        # drains them; the development broker's default 16 MB per partition would delete unread
        # segments (measured with 100,000: 81,391 stored). Production sets retention by its own policy.
        "LLMOPS_KAFKA_TOPIC_RETENTION_MB": "0",
    }.items()
}


def _texts() -> list[str]:
    return [json.loads(line)["text"] for line in SAMPLE.read_text().splitlines() if line.strip()]


def _redactor() -> Callable[[str], str]:
    """The Redactor serving's InferenceLogWriter applies (serving's settings: LLMOPS_PII_KINDS and
    LLMOPS_SERVING_REDACT_PII)."""
    from llmops.core.settings import AuthSettings
    from llmops.serving.settings import Settings

    # The bench serves nothing: no API keys are needed for the settings to load.
    return Settings(auth=AuthSettings(auth_disabled=True)).redactor()


def _letters(i: int) -> str:
    """``i`` in letters (a suffix that no PII detector reads as a number)."""
    word = ""
    while True:
        i, digit = divmod(i, 26)
        word = chr(ord("a") + digit) + word
        if i == 0:
            return word


def _message(i: int, texts: list[str], base: float, redact: Callable[[str], str] | None) -> bytes:
    """The ``i``-th event as serving would log it (redacted when ``redact`` is given)."""
    # Every prompt is unique, as live prompts mostly are: the drift job's vector cache serves only the
    # prompts its previous runs sampled, never a repeated text.
    prompt = f"{texts[i % len(texts)]} (case {_letters(i)})"
    completion = texts[(i * 7 + 3) % len(texts)]
    if redact is not None:
        prompt, completion = redact(prompt), redact(completion)
    return (
        InferenceLogged(
            request_id=f"req-{i}",
            model=MODEL,
            model_version="base",
            prompt=prompt,
            completion=completion,
            prompt_tokens=max(1, len(texts[i % len(texts)]) // 4),
            completion_tokens=max(1, len(texts[(i * 7 + 3) % len(texts)]) // 4),
            latency_ms=80.0 + (i * 37) % 900,
            time_to_first_token_ms=15.0 + (i * 13) % 90,
            finish_reason="stop",
            temperature=0.7,
            top_p=0.95,
            max_tokens=256,
            producer="serving",
            occurred_at=dt.datetime.fromtimestamp(base - SPAN_SECONDS * (1 - i / EVENTS), dt.UTC),
        )
        .model_dump_json()
        .encode()
    )


async def _produce(bootstrap: str, redact: Callable[[str], str] | None) -> tuple[float, float]:
    """Build (and redact, if asked) and send EVENTS; returns the time of the first send and of the
    last acknowledgement."""
    texts = _texts()
    base = time.time()
    # Built (and redacted) before the clock: serving redacts each answer as it logs it, at its own
    # request rate, so the log path starts at the topic; the redaction's own rate is printed apart.
    messages = [_message(i, texts, base, redact) for i in range(EVENTS)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    first = time.monotonic()
    try:
        for start in range(0, EVENTS, BATCH):
            futures = [
                await producer.send(topics.INFERENCE_LOGGED, messages[i])
                for i in range(start, min(start + BATCH, EVENTS))
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return first, time.monotonic()


def _redaction_rate() -> tuple[float, float]:
    """Events per second the Redactor alone handles (prompt and completion, one core), and the share of
    the sample's texts it changes."""
    texts, redact = _texts(), _redactor()
    n = min(EVENTS, 2_000)
    started = time.perf_counter()
    for i in range(n):
        redact(texts[i % len(texts)])
        redact(texts[(i * 7 + 3) % len(texts)])
    rate = n / (time.perf_counter() - started)
    return rate, sum(redact(t) != t for t in texts) / len(texts)


def _raw_process(
    bootstrap: str, folder: str, ready: multiprocessing.Queue, done: multiprocessing.Queue
) -> None:
    asyncio.run(_raw_consumer(bootstrap, Path(folder), ready, done))


async def _raw_consumer(
    bootstrap: str, folder: Path, ready: multiprocessing.Queue, done: multiprocessing.Queue
) -> None:
    from llmops.core.clickhouse import apply_migrations, connect, migrations_dir
    from llmops.monitoring.store.analytics import INFERENCE_COLUMNS, inference_row

    client = connect(f"chdb://{folder}")
    apply_migrations(client, migrations_dir())
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="bench-raw",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=BATCH,
    )

    class Assigned(ConsumerRebalanceListener):
        # Ready once the group gave it the partitions: the moment monitoring's log line marks.
        async def on_partitions_assigned(self, assigned: object) -> None:
            if assigned and not marked:
                marked.append(True)
                ready.put(time.monotonic())

        async def on_partitions_revoked(self, revoked: object) -> None:
            pass

    marked: list[bool] = []
    await consumer.start()
    consumer.subscribe([topics.INFERENCE_LOGGED], listener=Assigned())
    stored = 0
    try:
        while stored < EVENTS:
            batch = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            rows = [
                inference_row(InferenceLogged.model_validate_json(r.value))
                for part in batch.values()
                for r in part
            ]
            if rows:
                await asyncio.to_thread(client.insert, "inference_log", rows, column_names=INFERENCE_COLUMNS)
                await consumer.commit()
                stored += len(rows)
        done.put(time.monotonic())
    finally:
        await consumer.stop()
        client.close()


@dataclass
class Raw:
    rate: float
    producer_rate: float | None  # live only


def _raw(root: Path, live: bool) -> Raw:
    platform = make_platform(root)
    platform.start_broker()
    context = multiprocessing.get_context("spawn")
    ready, done = context.Queue(), context.Queue()
    try:
        if not live:
            asyncio.run(_produce(platform.bootstrap_servers, None))
        process = context.Process(
            target=_raw_process, args=(platform.bootstrap_servers, str(root / "clickhouse"), ready, done)
        )
        process.start()
        started = ready.get(timeout=120)
        producer_rate = None
        if live:
            started, sent = asyncio.run(_produce(platform.bootstrap_servers, None))
            producer_rate = EVENTS / (sent - started)
        finished = done.get(timeout=1800)
        process.join(60)
        return Raw(EVENTS / (finished - started), producer_rate)
    finally:
        platform.down()


@dataclass
class Ours:
    rate: float
    producer_rate: float | None  # live only
    startup: float  # monitoring's process start to the measurement's start, not counted
    serving: float  # monitoring's process start to SERVING
    seconds: float  # the measured part
    drift_runs: int
    drift_results: int
    drift_statuses: str
    drift_seconds: float  # a drift run's mean duration
    at_serving: int  # events stored when monitoring reported SERVING
    after_serving: float | None  # events per second from SERVING on (backlog; None: all stored by then)
    alert_runs: int
    alerts: str
    failed_jobs: int
    redacted_rows: int  # stored rows whose prompt or completion holds a placeholder


def _assigned(platform: LocalPlatform) -> float:
    """When monitoring's inference consumer was assigned its partitions (its log line), on this
    process's monotonic clock."""
    log = (platform.log_dir / "monitoring.log").read_text(errors="replace")
    found = _ASSIGNED.search(log)
    assert found, "monitoring's log has no partition assignment for the inference topic"
    wall = time.mktime(time.strptime(found["at"], "%Y-%m-%d %H:%M:%S")) + int(found["ms"]) / 1000
    return time.monotonic() - (time.time() - wall)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _through_monitoring(root: Path, live: bool) -> Ours:
    platform = make_platform(root, **MONITORING_ENV)
    platform.start_broker()
    redact = _redactor()
    try:
        if not live:
            asyncio.run(_produce(platform.bootstrap_servers, redact))
        spawned = time.monotonic()
        platform.start_services(["monitoring"])
        serving = time.monotonic()
        at_serving = asyncio.run(committed_offset(platform.bootstrap_servers, GROUP, topics.INFERENCE_LOGGED))
        # Backlog: monitoring drains the topic while its other consumers still join (one after the
        # other, before SERVING), so the clock starts when its inference consumer got the partitions,
        # as the baseline's does.
        ready = _assigned(platform) if not live else serving
        started = ready
        producer_rate = None
        if live:
            started, sent = asyncio.run(_produce(platform.bootstrap_servers, redact))
            producer_rate = EVENTS / (sent - started)
        # Done when monitoring has committed every event (it commits after the insert); asked of the
        # broker, so the polling adds no load to monitoring's ClickHouse thread.
        while (
            asyncio.run(committed_offset(platform.bootstrap_servers, GROUP, topics.INFERENCE_LOGGED)) < EVENTS
        ):
            time.sleep(0.1)
        finished = time.monotonic()
        # The measured part on the wall clock, which drift_results and alerts_v are stamped with.
        wall_finished = time.time()
        wall_started = wall_finished - (finished - started)
        # After the clock: the alerts raised during the measurement reach alerts_v through Kafka.
        bootstrap = platform.bootstrap_servers
        deadline = time.monotonic() + 30
        while (
            asyncio.run(end_offset(bootstrap, topics.MONITORING_ALERT)) > 0
            and not asyncio.run(caught_up(bootstrap, ALERTS_GROUP, topics.MONITORING_ALERT))
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        stored = int(query_monitoring(platform, "SELECT count() FROM inference_log")[0][0])
        assert stored == EVENTS, f"monitoring stored {stored} of {EVENTS} events"
        # What redaction writes in place of personal data (the pii_probing alert's pattern).
        placeholder = "countIf(match(prompt, {p:String}) OR match(completion, {p:String}))"
        redacted = int(
            query_monitoring(platform, f"SELECT {placeholder} FROM inference_log", p=PII_PLACEHOLDER_REGEX)[
                0
            ][0]
        )
        start_ts = f"fromUnixTimestamp64Milli(toInt64({_ms(wall_started)}), 'UTC')"
        end_ts = f"fromUnixTimestamp64Milli(toInt64({_ms(wall_finished)}), 'UTC')"
        window = f"BETWEEN {start_ts} AND {end_ts}"
        # A drift run writes its results when it ends (ingested_at) and stamps them with its start
        # (computed_at); the one in flight at the end is waited for, then every run that overlapped the
        # measurement is counted.
        scheduled = "FROM drift_results WHERE source = 'schedule'"
        deadline = time.monotonic() + DRIFT_WAIT_SECONDS
        while time.monotonic() < deadline and not int(
            query_monitoring(platform, f"SELECT count() {scheduled} AND ingested_at >= {end_ts}")[0][0]
        ):
            time.sleep(1)
        runs, results, statuses, seconds = query_monitoring(
            platform,
            "SELECT uniqExact(report_id), sum(n), arrayStringConcat(arraySort(groupUniqArrayArray(s)), ','),"
            " avg(seconds) FROM (SELECT report_id, count() AS n, groupUniqArray(status) AS s,"
            " dateDiff('millisecond', min(computed_at), max(ingested_at)) / 1000 AS seconds"
            f" {scheduled} GROUP BY report_id"
            f" HAVING min(computed_at) <= {end_ts} AND max(ingested_at) >= {start_ts})",
        )[0]
        alert_runs, alerts = query_monitoring(
            platform,
            "SELECT uniqExact(occurred_at),"
            " arrayStringConcat(arraySort(groupUniqArray(rule)), ',')"
            f" FROM alerts_v WHERE occurred_at {window}",
        )[0]
        log = (platform.log_dir / "monitoring.log").read_text(errors="replace")
        if keep := os.environ.get("LLMOPS_BENCH_LOGPATH_LOGS"):
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / f"{root.name}.log").write_text(log)
        failed = log.count("periodic job drift failed") + log.count("periodic job alerts failed")
        failed += log.count("drift: the report for model")
        return Ours(
            rate=EVENTS / (finished - started),
            producer_rate=producer_rate,
            startup=ready - spawned,
            serving=serving - spawned,
            seconds=finished - started,
            drift_runs=int(runs),
            drift_results=int(results),
            drift_statuses=statuses or "-",
            drift_seconds=float(seconds) if int(runs) else 0.0,
            at_serving=at_serving,
            after_serving=(EVENTS - at_serving) / (finished - serving) if at_serving < EVENTS else None,
            alert_runs=int(alert_runs),
            alerts=alerts or "-",
            failed_jobs=failed,
            redacted_rows=redacted,
        )
    finally:
        platform.down()


def run() -> None:
    print(
        f"{EVENTS:,} inference.logged events (prompts and completions from {SAMPLE.name}), a fresh local "
        "broker each time, ClickHouse in process"
    )
    rate, share = _redaction_rate()
    print(
        f"  redaction (serving's Redactor) alone: {rate:,.0f} events/s on one core (prompt and completion);"
        f" it changes {share:.0%} of the sample's texts"
    )
    jobs = ", ".join(f"{k.removeprefix('LLMOPS_MONITORING_')}={v}" for k, v in MONITORING_ENV.items())
    print(f"  platform: events as serving logs them (redacted) + monitoring with {jobs}")
    print("  baseline: the raw pipeline, unredacted, no drift or alerts")
    print(
        f"  {ROUNDS} rounds per mode, baseline then platform in each (this machine's speed drifts between"
        " phases: the ratio is each round's, the verdict the median's)"
    )
    medians, drift_runs = [], []
    with tempfile.TemporaryDirectory(prefix="llmops-bench-logpath-", ignore_cleanup_errors=True) as tmp:
        for live in (False, True):
            mode = "live" if live else "backlog"
            ratios = []
            for round_ in range(1, ROUNDS + 1):
                raw = _raw(Path(tmp) / f"raw-{mode}-{round_}", live)
                producer = f"  (producer {raw.producer_rate:,.0f} events/s)" if raw.producer_rate else ""
                print(
                    f"  {mode:7} {round_}  raw aiokafka consumer + insert          {raw.rate:9,.0f} events/s"
                    f"  baseline{producer}",
                    flush=True,
                )
                shutil.rmtree(Path(tmp) / f"raw-{mode}-{round_}", ignore_errors=True)
                ours = _through_monitoring(Path(tmp) / f"monitoring-{mode}-{round_}", live)
                shutil.rmtree(Path(tmp) / f"monitoring-{mode}-{round_}", ignore_errors=True)
                ratios.append(ours.rate / raw.rate)
                drift_runs.append(ours.drift_runs)
                producer = f"  (producer, {ours.producer_rate:,.0f} events/s)" if ours.producer_rate else ""
                print(
                    f"  {mode:7} {round_}  redaction + monitoring (drift, alerts) {ours.rate:9,.0f} events/s"
                    f"  ratio {ours.rate / raw.rate:.2f}{producer}",
                    flush=True,
                )
                if not live:
                    after = f"{ours.after_serving:,.0f} events/s" if ours.after_serving else "-"
                    print(
                        f"             {ours.at_serving:,} stored by SERVING; from SERVING on {after}",
                        flush=True,
                    )
                print(
                    f"             measured {ours.seconds:.1f}s (start-up {ours.startup:.1f}s not counted,"
                    f" SERVING after {ours.serving:.1f}s); during it: {ours.drift_runs} drift run(s)"
                    f" ({ours.drift_seconds:.1f}s each, {ours.drift_results} results: {ours.drift_statuses}),"
                    f" {ours.alert_runs} alert run(s) that raised ({ours.alerts});"
                    f" {ours.failed_jobs} failed job run(s) in the log; {ours.redacted_rows:,} of {EVENTS:,}"
                    " stored events carry placeholders",
                    flush=True,
                )
            medians.append(statistics.median(ratios))
            print(
                f"  {mode:7}    median ratio {medians[-1]:.2f}"
                f" (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
            )
    ratios = medians
    verdict = "met" if min(ratios) >= GOAL else "NOT met"
    if min(drift_runs) == 0:
        verdict = "not measured: a measurement had no drift run in it (more LLMOPS_BENCH_LOGPATH_EVENTS)"
    print(f"  goal: at least {GOAL:.2f}x in both; backlog {ratios[0]:.2f}x, live {ratios[1]:.2f}x: {verdict}")
