"""Drift statistics in ClickHouse against the same statistics computed after pulling the rows into pandas.

``LLMOPS_BENCH_DRIFT_ROWS`` synthetic answers (default 1,000,000) go into a fresh chdb folder (the
ClickHouse engine in process, the platform's migrations) in ten ``INSERT ... SELECT`` batches from
``numbers()``, so the table holds several parts as a live one does: 70% in a 7-day reference window,
30% in a 1-day current window split between a champion arm and a challenger whose latency is 1.2x.

- fast: :func:`llmops.monitoring.drift.numeric_drift` with ``numeric_method="histograms"``: the
  hourly histograms that migration 0018's view fills at insert time (a row per hour, group, signal
  and bin), checked hour by hour against the deduplicated row count; windows on whole hours.
- exact: the same function's exact path, PSI and KS of the four numeric signals per (version, arm),
  aggregated in SQL in two statements (counts and reference deciles; KS and the counts per decile);
  only a row per window and group comes back.
- baseline: the same rows (both windows, the six columns needed) pulled into a pandas DataFrame, then
  the same PSI (reference deciles, same bin rule) and KS (two-sample statistic, scipy's asymptotic
  p-value) per group in pandas/NumPy/SciPy.

Statements are timed one by one (by the ``log_comment`` each carries) to show where the time goes.
Each path is timed over ROUNDS alternating rounds; the median of each is printed with its ratio
against pandas, and each result is compared with pandas: the exact path within 1e-6 (PSI) and 1e-9
(KS); the histograms exact for token counts, within their stated bounds for timings. Goal:
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


def _sql(client, method: str = "exact") -> dict[tuple[str, str, str, str], float]:
    request = DriftRequest(MODEL, START, SPLIT, SPLIT, END, signals=NUMERIC_SIGNALS, numeric_method=method)
    return {(r.model_version, r.arm, r.signal, r.statistic): r.value for r in numeric_drift(client, request)}


def _fast(client) -> dict[tuple[str, str, str, str], float]:
    return _sql(client, "histograms")


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
            timings: dict[str, list[float]] = {"pandas": [], "exact": [], "fast": []}
            results = {}
            timed = _Timed(client)
            for _ in range(ROUNDS):
                for name, compute in (("pandas", _pandas), ("exact", _sql), ("fast", _fast)):
                    t0 = time.monotonic()
                    results[name] = compute(client if name == "pandas" else timed)
                    timings[name].append(time.monotonic() - t0)
                    print(f"  {name:6} {timings[name][-1]:.3f}s", flush=True)
        finally:
            client.close()

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    baseline, exact, fast = (median(timings[k]) for k in ("pandas", "exact", "fast"))
    print(f"  pandas (pull the rows, PSI + KS there)     {baseline:7.3f}s  baseline (median of {ROUNDS})")
    print(
        f"  exact SQL (numeric_drift, sorts the rows)  {exact:7.3f}s  pandas / exact {baseline / exact:5.1f}x"
    )
    print(
        f"  hourly histograms (numeric_method)         {fast:7.3f}s  pandas / fast  {baseline / fast:5.1f}x"
    )
    for label, seconds in timed.seconds.items():
        print(f"    statement {label}: median {median(seconds):.3f}s, best {min(seconds):.3f}s")
    theirs = results["pandas"]
    worst = {}
    for name in ("exact", "fast"):
        ours = results[name]
        assert ours.keys() == theirs.keys(), (sorted(ours), sorted(theirs))
        for statistic in ("psi", "ks"):
            worst[(name, statistic)] = max(abs(ours[k] - theirs[k]) for k in ours if k[3] == statistic)
        print(
            f"  agreement with pandas, {name}: PSI within {worst[(name, 'psi')]:.1e}, "
            f"KS statistic within {worst[(name, 'ks')]:.1e}"
        )
    for key in sorted(theirs):
        print(f"    {'/'.join(key)}: pandas {theirs[key]:.5f} exact {results['exact'][key]:.5f} "
              f"fast {results['fast'][key]:.5f}")  # fmt: skip
    assert worst[("exact", "psi")] < 1e-6 and worst[("exact", "ks")] < 1e-9
    tokens = [k for k in theirs if k[2] in ("prompt_tokens", "completion_tokens")]
    assert max(abs(results["fast"][k] - theirs[k]) for k in tokens) < 1e-9  # unit bins: exact
    assert worst[("fast", "psi")] < 0.01 and worst[("fast", "ks")] < 0.01
