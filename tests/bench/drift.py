"""Drift statistics in ClickHouse against the same statistics computed after pulling the rows into pandas.

``LLMOPS_BENCH_DRIFT_ROWS`` synthetic answers (default 1,000,000) go into a fresh chdb folder (the
ClickHouse engine in process, the platform's migrations) in ten ``INSERT ... SELECT`` batches from
``numbers()``, so the table holds several parts as a live one does: 70% in a 7-day reference window,
30% in a 1-day current window split between a champion arm and a challenger whose latency is 1.2x.

- ours: :func:`llmops.monitoring.drift.numeric_drift`, PSI and KS of the four numeric signals per
  (version, arm), aggregated in SQL in two statements (counts and reference deciles; KS and the
  counts per decile); only a row per window and group comes back.
- baseline: the same rows (both windows, the six columns needed) pulled into a pandas DataFrame, then
  the same PSI (reference deciles, same bin rule) and KS (two-sample statistic, scipy's asymptotic
  p-value) per group in pandas/NumPy/SciPy.

The SQL path's statements are timed one by one (by the ``log_comment`` each carries) to show where
its time goes. Each is timed over ROUNDS alternating rounds; the best of each is printed with the
ratio, and the two results are compared (PSI within 1e-6, KS statistic within 1e-9). Goal:
seconds, and at least 10x.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time

import numpy as np

from llmops.core.clickhouse import apply_migrations, connect, migrations_dir
from llmops.monitoring.drift import NUMERIC_SIGNALS, PSI_LEVELS, DriftRequest, numeric_drift

ROWS = int(os.environ.get("LLMOPS_BENCH_DRIFT_ROWS", "1000000"))
BATCHES = 10
ROUNDS = 3
MODEL = "bench"
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
SPLIT = START + dt.timedelta(days=7)
END = SPLIT + dt.timedelta(days=1)

# Row `number` of `total`: the first 70% spread over the reference week, the rest over the current
# day; in the current day one row in five is the challenger, whose timings are 1.2x.
_INSERT = """
INSERT INTO inference_log (event_id, request_id, occurred_at, model, model_version, arm, prompt_tokens,
    completion_tokens, latency_ms, time_to_first_token_ms)
SELECT generateUUIDv4(number), toString(number),
    if(in_current,
        {split:DateTime64(3, 'UTC')} + toIntervalMillisecond(intDiv((number - cut) * 86400000, total - cut)),
        {start:DateTime64(3, 'UTC')} + toIntervalMillisecond(intDiv(number * 604800000, cut))) AS occurred_at,
    {model:String}, if(challenger, 'bench/2', 'bench/1'), if(challenger, 'challenger', 'champion'),
    toUInt32(greatest(1, round(randLogNormal(4.0, 0.6)))),
    toUInt32(greatest(1, round(randLogNormal(5.0, 0.5)))) AS completion,
    completion * randLogNormal(3.0, 0.3) * if(challenger, 1.2, 1.0),
    randLogNormal(5.0, 0.4) * if(challenger, 1.2, 1.0)
FROM
(
    SELECT number, {total:UInt64} AS total, toUInt64({total:UInt64} * 7 / 10) AS cut,
        number >= cut AS in_current, in_current AND number % 5 = 0 AS challenger
    FROM numbers({first:UInt64}, {count:UInt64})
)
"""

_PULL = """
SELECT model_version, arm, occurred_at >= {split:DateTime64(3, 'UTC')} AS in_current,
    prompt_tokens, completion_tokens, latency_ms, time_to_first_token_ms
FROM inference_log_v
WHERE model = {model:String}
    AND occurred_at >= {start:DateTime64(3, 'UTC')} AND occurred_at < {end:DateTime64(3, 'UTC')}
"""


def _pandas(client) -> dict[tuple[str, str, str, str], float]:
    """PSI and KS per (version, arm, signal) from the rows pulled into a DataFrame.

    The reference side (sorted values, deciles, bin shares) is computed once per signal and shared
    by the groups, as the SQL does in "model" scope.
    """
    from scipy.stats import ks_2samp

    frame = client.query_df(_PULL, parameters={"model": MODEL, "start": START, "split": SPLIT, "end": END})
    current = frame["in_current"].astype(bool)
    epsilon = 1e-4
    out: dict[tuple[str, str, str, str], float] = {}
    for signal in NUMERIC_SIGNALS:
        ref = frame.loc[~current, signal].to_numpy(dtype=np.float64)
        ordered = np.sort(ref)
        n = len(ordered)
        deciles = np.unique([ordered[min(int(level * n), n - 1)] for level in PSI_LEVELS])
        bins = len(deciles) + 1
        r = np.maximum(np.bincount(np.searchsorted(deciles, ref, "left"), minlength=bins) / n, epsilon)
        for (version, arm), cur_frame in frame.loc[current, ["model_version", "arm", signal]].groupby(
            ["model_version", "arm"]
        ):
            cur = cur_frame[signal].to_numpy(dtype=np.float64)
            c = np.bincount(np.searchsorted(deciles, cur, "left"), minlength=bins) / len(cur)
            c = np.maximum(c, epsilon)
            out[(version, arm, signal, "psi")] = float(np.sum((c - r) * np.log(c / r)))
            out[(version, arm, signal, "ks")] = float(ks_2samp(ref, cur, method="asymp").statistic)
    return out


class _Timed:
    """The client, timing each statement by the ``log_comment`` drift gives it: where the SQL time goes."""

    def __init__(self, client) -> None:
        self.client = client
        self.seconds: dict[str, list[float]] = {}

    def query(self, *args, **kwargs):
        label = (kwargs.get("settings") or {}).get("log_comment", "other")
        started = time.monotonic()
        try:
            return self.client.query(*args, **kwargs)
        finally:
            self.seconds.setdefault(label, []).append(time.monotonic() - started)


def _sql(client) -> dict[tuple[str, str, str, str], float]:
    request = DriftRequest(MODEL, START, SPLIT, SPLIT, END, signals=NUMERIC_SIGNALS)
    return {(r.model_version, r.arm, r.signal, r.statistic): r.value for r in numeric_drift(client, request)}


def run() -> None:
    print(f"{ROWS:,} answers in ClickHouse in process (chdb), {BATCHES} parts; 4 numeric signals, 2 arms")
    with tempfile.TemporaryDirectory(prefix="llmops-bench-drift-", ignore_cleanup_errors=True) as tmp:
        client = connect(f"chdb://{tmp}/clickhouse")
        try:
            apply_migrations(client, migrations_dir())
            started = time.monotonic()
            step = -(-ROWS // BATCHES)
            for first in range(0, ROWS, step):
                parameters = {"model": MODEL, "start": START, "split": SPLIT, "total": ROWS, "first": first}
                client.command(_INSERT, parameters={**parameters, "count": min(step, ROWS - first)})
                print(f"  inserted {min(first + step, ROWS):,} rows", flush=True)
            stored = client.query("SELECT count() FROM inference_log_v").result_rows[0][0]
            print(f"  {stored:,} rows stored in {time.monotonic() - started:.1f}s (not counted)", flush=True)
            timings: dict[str, list[float]] = {"sql": [], "pandas": []}
            results = {}
            timed = _Timed(client)
            for _ in range(ROUNDS):
                for name, compute, through in (("pandas", _pandas, client), ("sql", _sql, timed)):
                    t0 = time.monotonic()
                    results[name] = compute(through)
                    timings[name].append(time.monotonic() - t0)
                    print(f"  {name:6} {timings[name][-1]:.2f}s", flush=True)
        finally:
            client.close()
    sql, baseline = min(timings["sql"]), min(timings["pandas"])
    print(f"  pandas (pull the rows, PSI + KS there)  {baseline:6.2f}s  baseline (best of {ROUNDS})")
    print(
        f"  ClickHouse SQL (numeric_drift)          {sql:6.2f}s  pandas time / SQL time {baseline / sql:.1f}x"
    )
    for label, seconds in timed.seconds.items():
        print(
            f"    statement {label}: best {min(seconds):.3f}s, "
            f"median {sorted(seconds)[len(seconds) // 2]:.3f}s"
        )
    ours, theirs = results["sql"], results["pandas"]
    assert ours.keys() == theirs.keys(), (sorted(ours), sorted(theirs))
    worst_psi = max(abs(ours[k] - theirs[k]) for k in ours if k[3] == "psi")
    worst_ks = max(abs(ours[k] - theirs[k]) for k in ours if k[3] == "ks")
    print(f"  agreement: PSI within {worst_psi:.1e}, KS statistic within {worst_ks:.1e}")
    for key in sorted(ours):
        print(f"    {'/'.join(key)}: {ours[key]:.4f}")
    assert worst_psi < 1e-6 and worst_ks < 1e-9
