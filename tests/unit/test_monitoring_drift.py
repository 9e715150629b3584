"""Drift statistics computed in ClickHouse (chdb), checked against NumPy and SciPy on the same data.

One chdb folder serves the whole module (the migrations take a while) and is closed at its end, so
the next module can open its own; every test writes under model names of its own.
"""

from __future__ import annotations

import datetime as dt
import glob
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from clickhouse_connect.driver import Client

from llmops.core.clickhouse import apply_migrations, connect, insert_rows, migrations_dir, rollback_migration
from llmops.core.errors import InvalidArgument
from llmops.monitoring.drift import (
    FEEDBACK_SIGNAL,
    HISTOGRAM_TABLE,
    INSUFFICIENT_DATA,
    LOG_BINS_PER_DOUBLING,
    NUMERIC_SIGNALS,
    PSI_LEVELS,
    RETRIEVAL_NOTE,
    RETRIEVAL_SIGNAL,
    DriftRequest,
    DriftResult,
    DriftThresholds,
    drift_report,
    embedding_drift,
    feedback_drift,
    histogram_ks,
    histogram_psi,
    numeric_drift,
    retrieval_drift,
    sample_prompts,
)

REFERENCE = (dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 8, tzinfo=dt.UTC))
CURRENT = (dt.datetime(2026, 11, 8, tzinfo=dt.UTC), dt.datetime(2026, 11, 9, tzinfo=dt.UTC))
INFERENCE_COLUMNS = (
    "event_id", "request_id", "occurred_at", "model", "model_version", "arm", "prompt", "prompt_tokens",
    "completion_tokens", "latency_ms", "time_to_first_token_ms",
)  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    folder = tmp_path_factory.mktemp("drift")
    c = connect(f"chdb://{folder}/clickhouse")
    try:
        apply_migrations(c, migrations_dir())
        yield c
    finally:
        c.close()


def _times(rng: np.random.Generator, window: tuple[dt.datetime, dt.datetime], n: int) -> list[dt.datetime]:
    span = (window[1] - window[0]).total_seconds()
    return [window[0] + dt.timedelta(seconds=float(s)) for s in np.sort(rng.uniform(0, span - 1, n))]


def _traffic(rng: np.random.Generator, n: int, *, latency_factor: float = 1.0, rag: bool = False) -> dict:
    """Synthetic answers: chat-sized prompts (or RAG-sized ones), lognormal outputs and timings."""
    if rag:
        prompt_tokens = np.round(rng.normal(420, 60, n)).clip(1)
    else:
        prompt_tokens = np.round(rng.lognormal(4.0, 0.6, n)).clip(1)
    completion_tokens = np.round(rng.lognormal(5.0, 0.5, n)).clip(1)
    latency = completion_tokens * rng.lognormal(3.0, 0.3, n) * latency_factor
    ttft = rng.lognormal(5.0, 0.4, n) * latency_factor
    return {
        "prompt_tokens": prompt_tokens.astype(int),
        "completion_tokens": completion_tokens.astype(int),
        "latency_ms": latency,
        "time_to_first_token_ms": ttft,
    }


def _insert_answers(
    client: Client,
    model: str,
    window: tuple[dt.datetime, dt.datetime],
    values: dict,
    *,
    version: str = "",
    arm: str = "champion",
    prompts: list[str] | None = None,
    seed: int = 0,
) -> list[str]:
    n = len(values["latency_ms"])
    rng = np.random.default_rng(seed)
    # Ids fixed by the seed: the hash-ordered prompt sample is the same on every run.
    request_ids = [f"{model}-{arm}-{seed}-{i}" for i in range(n)]
    rows = [
        [
            uuid.uuid4(), request_ids[i], t, model, version or f"{model}/1", arm,
            prompts[i] if prompts else f"prompt {i}", int(values["prompt_tokens"][i]),
            int(values["completion_tokens"][i]), float(values["latency_ms"][i]),
            float(values["time_to_first_token_ms"][i]),
        ]
        for i, t in enumerate(_times(rng, window, n))
    ]  # fmt: skip
    insert_rows(client, "inference_log", INFERENCE_COLUMNS, rows)
    return request_ids


def _request(model: str, **kwargs) -> DriftRequest:
    return DriftRequest(model, *REFERENCE, *CURRENT, **kwargs)


def _by(results: list[DriftResult], signal: str, statistic: str, arm: str = "champion") -> DriftResult:
    (found,) = [r for r in results if r.signal == signal and r.statistic == statistic and r.arm == arm]
    return found


def test_same_distribution_is_not_flagged_and_shifts_are(client: Client) -> None:
    draws, flagged = 20, 0
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        model = f"same-{seed}"
        _insert_answers(client, model, REFERENCE, _traffic(rng, 1000), seed=seed)
        _insert_answers(client, model, CURRENT, _traffic(rng, 600), seed=seed + 100)
        results = numeric_drift(client, _request(model, signals=NUMERIC_SIGNALS))
        assert {r.status for r in results} == {"ok"}
        assert len(results) == 2 * len(NUMERIC_SIGNALS)
        flagged += any(r.drifted for r in results)
        if seed == 0:
            for r in results:
                print(f"same draw 0: {r.signal} {r.statistic}={r.value:.4f} p={r.p_value}")
    rate = flagged / draws
    print(f"false-positive rate over {draws} same-distribution draws: {rate:.2f}")
    assert rate <= 0.15

    rng = np.random.default_rng(1234)
    _insert_answers(client, "shifted", REFERENCE, _traffic(rng, 1000), seed=1)
    _insert_answers(client, "shifted", CURRENT, _traffic(rng, 600, latency_factor=1.5), arm="slow", seed=2)
    _insert_answers(client, "shifted", CURRENT, _traffic(rng, 600, rag=True), arm="rag", seed=3)
    _insert_answers(client, "shifted", CURRENT, _traffic(rng, 600), arm="champion", seed=4)
    results = numeric_drift(client, _request("shifted", signals=NUMERIC_SIGNALS))
    for r in results:
        print(f"shifted {r.arm}: {r.signal} {r.statistic}={r.value:.4f} p={r.p_value} drifted={r.drifted}")
    for signal in ("latency_ms", "time_to_first_token_ms"):
        assert _by(results, signal, "ks", "slow").drifted
        assert _by(results, signal, "psi", "slow").drifted
    assert _by(results, "prompt_tokens", "ks", "rag").drifted
    assert _by(results, "prompt_tokens", "psi", "rag").drifted
    # What did not change is not flagged: the slow arm's prompts, the RAG arm's timings, the champion.
    assert not _by(results, "prompt_tokens", "ks", "slow").drifted
    assert not _by(results, "latency_ms", "ks", "rag").drifted
    assert not any(r.drifted for r in results if r.arm == "champion")
    assert {r.current_count for r in results} == {600}
    assert {r.reference_count for r in results} == {1000}


def _numpy_psi(reference: np.ndarray, current: np.ndarray, epsilon: float = 1e-4) -> float:
    ordered = np.sort(reference)
    n = len(ordered)
    deciles = np.unique([ordered[min(int(level * n), n - 1)] for level in PSI_LEVELS])
    bins = len(deciles) + 1
    # np.searchsorted(..., "left") counts the deciles below a value: (-inf, e1], (e1, e2], ...
    r = np.bincount(np.searchsorted(deciles, reference, "left"), minlength=bins) / len(reference)
    c = np.bincount(np.searchsorted(deciles, current, "left"), minlength=bins) / len(current)
    r, c = np.maximum(r, epsilon), np.maximum(c, epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def _numpy_ks(reference: np.ndarray, current: np.ndarray) -> float:
    points = np.concatenate([reference, current])
    cdf_r = np.searchsorted(np.sort(reference), points, "right") / len(reference)
    cdf_c = np.searchsorted(np.sort(current), points, "right") / len(current)
    return float(np.max(np.abs(cdf_r - cdf_c)))


@pytest.mark.parametrize("scope", ["model", "group"])
def test_psi_and_ks_match_numpy_and_scipy(client: Client, scope: str) -> None:
    rng = np.random.default_rng(7)
    model = f"exact-{scope}"
    reference, current = _traffic(rng, 1500), _traffic(rng, 700, latency_factor=1.2)
    # Another arm served in the reference window only: "model" scope compares with both arms' values.
    other = _traffic(rng, 500, latency_factor=2.0, rag=True)
    _insert_answers(client, model, REFERENCE, reference, seed=5)
    _insert_answers(client, model, REFERENCE, other, version=f"{model}/0", arm="other", seed=7)
    _insert_answers(client, model, CURRENT, current, seed=6)
    results = numeric_drift(client, _request(model, signals=NUMERIC_SIGNALS, reference_scope=scope))
    assert {r.arm for r in results} == {"champion"}
    try:
        from scipy.stats import ks_2samp
    except ImportError:  # scipy is optional: the NumPy statistic stands in
        ks_2samp = None
    for signal in NUMERIC_SIGNALS:
        ref = np.asarray(reference[signal], float)
        if scope == "model":
            ref = np.concatenate([ref, np.asarray(other[signal], float)])
        cur = np.asarray(current[signal], float)
        psi, ks = _by(results, signal, "psi"), _by(results, signal, "ks")
        assert (psi.reference_count, ks.current_count) == (len(ref), len(cur))
        expected_ks = ks_2samp(ref, cur).statistic if ks_2samp else _numpy_ks(ref, cur)
        scipy_p = ks_2samp(ref, cur, method="asymp").pvalue if ks_2samp else float("nan")
        print(
            f"{scope} scope, {signal}: psi sql={psi.value:.9f} numpy={_numpy_psi(ref, cur):.9f}; "
            f"ks sql={ks.value:.9f} {'scipy' if ks_2samp else 'numpy'}={expected_ks:.9f}; "
            f"p sql={ks.p_value:.3g} scipy asymp={scipy_p:.3g}"
        )
        assert psi.value == pytest.approx(_numpy_psi(ref, cur), abs=1e-6)
        assert ks.value == pytest.approx(expected_ks, abs=1e-9)
        assert ks.value == pytest.approx(_numpy_ks(ref, cur), abs=1e-9)


@pytest.mark.parametrize("scope", ["model", "group"])
def test_each_group_gets_its_own_reference_deciles_and_ties_merge(client: Client, scope: str) -> None:
    """Several groups at once, token counts with few distinct values (tied deciles): exact per group."""
    rng = np.random.default_rng(21)
    model = f"groups-{scope}"
    values = {}
    for arm, window, n, spread in (
        ("a", REFERENCE, 900, 3), ("b", REFERENCE, 700, 40), ("a", CURRENT, 400, 4), ("b", CURRENT, 300, 40),
    ):  # fmt: skip
        traffic = _traffic(rng, n)
        # Prompt lengths on a handful of values: several reference deciles tie and their bins merge.
        traffic["prompt_tokens"] = rng.integers(10, 10 + spread, n)
        values[(arm, window)] = traffic
        _insert_answers(client, model, window, traffic, arm=arm, seed=len(values))
    results = numeric_drift(client, _request(model, signals=NUMERIC_SIGNALS, reference_scope=scope))
    assert {r.arm for r in results} == {"a", "b"} and {r.status for r in results} == {"ok"}
    for arm in ("a", "b"):
        for signal in NUMERIC_SIGNALS:
            arms = ("a", "b") if scope == "model" else (arm,)
            ref = np.concatenate([np.asarray(values[(x, REFERENCE)][signal], float) for x in arms])
            cur = np.asarray(values[(arm, CURRENT)][signal], float)
            psi, ks = _by(results, signal, "psi", arm), _by(results, signal, "ks", arm)
            assert (psi.reference_count, psi.current_count) == (len(ref), len(cur))
            assert psi.value == pytest.approx(_numpy_psi(ref, cur), abs=1e-9), (arm, signal)
            assert ks.value == pytest.approx(_numpy_ks(ref, cur), abs=1e-9), (arm, signal)


def test_too_few_values_give_no_verdict(client: Client) -> None:
    rng = np.random.default_rng(11)
    _insert_answers(client, "sparse", REFERENCE, _traffic(rng, 300), seed=1)
    _insert_answers(client, "sparse", CURRENT, _traffic(rng, 200), seed=2)
    _insert_answers(client, "sparse", CURRENT, _traffic(rng, 20, latency_factor=3), arm="new", seed=3)
    results = numeric_drift(client, _request("sparse", signals=("latency_ms",)))
    new = [r for r in results if r.arm == "new"]
    assert [(r.statistic, r.status, r.value, r.p_value, r.drifted) for r in new] == [
        ("psi", INSUFFICIENT_DATA, None, None, None),
        ("ks", INSUFFICIENT_DATA, None, None, None),
    ]
    assert {(r.reference_count, r.current_count) for r in new} == {(300, 20)}
    assert {r.status for r in results if r.arm == "champion"} == {"ok"}
    # Compared with its own arm only, the champion has no reference at all.
    scoped = numeric_drift(client, _request("sparse", signals=("latency_ms",), reference_scope="group"))
    assert {(r.arm, r.status, r.reference_count) for r in scoped} == {
        ("champion", "ok", 300),
        ("new", INSUFFICIENT_DATA, 0),
    }


def test_feedback_score_shift_per_arm(client: Client) -> None:
    rng = np.random.default_rng(3)
    model = "rated"
    answers = {
        ("reference", "champion"): _insert_answers(client, model, REFERENCE, _traffic(rng, 400), seed=1),
        ("current", "champion"): _insert_answers(client, model, CURRENT, _traffic(rng, 300), seed=2),
        ("current", "challenger"): _insert_answers(
            client, model, CURRENT, _traffic(rng, 300), version=f"{model}/2", arm="challenger", seed=3
        ),
    }
    liked = {("reference", "champion"): 0.8, ("current", "champion"): 0.8, ("current", "challenger"): 0.5}
    rows = []
    for key, request_ids in answers.items():
        for request_id in request_ids:
            rows.append(
                [uuid.uuid4(), str(uuid.uuid4()), request_id, CURRENT[1], float(rng.random() < liked[key])]
            )
    insert_rows(client, "feedback", ("event_id", "feedback_id", "request_id", "occurred_at", "score"), rows)
    results = feedback_drift(client, _request(model, signals=(FEEDBACK_SIGNAL,)))
    for r in results:
        print(f"feedback {r.arm}: shift={r.value:+.3f} p={r.p_value:.3g} drifted={r.drifted}")
    champion, challenger = (
        _by(results, FEEDBACK_SIGNAL, "mean_shift"),
        _by(results, FEEDBACK_SIGNAL, "mean_shift", "challenger"),
    )
    assert challenger.model_version == f"{model}/2" and challenger.drifted
    assert challenger.value == pytest.approx(-0.3, abs=0.1) and challenger.p_value < 1e-6
    assert not champion.drifted and abs(champion.value) < 0.1
    assert (champion.reference_count, champion.current_count) == (400, 300)


def test_retrieval_top_score_per_collection(client: Client) -> None:
    rng = np.random.default_rng(5)
    columns = ("event_id", "request_id", "occurred_at", "collection", "mode", "scores")
    rows = []
    for collection, shift in (("manuals", 0.0), ("tickets", -0.15)):
        for window, n, delta in ((REFERENCE, 500, 0.0), (CURRENT, 300, shift)):
            for t in _times(rng, window, n):
                top = float(np.clip(rng.normal(0.7 + delta, 0.08), 0, 1))
                rows.append([uuid.uuid4(), str(uuid.uuid4()), t, collection, "dense", [top, top * 0.9]])
    rows.append([uuid.uuid4(), "none", CURRENT[0], "manuals", "dense", []])  # found nothing: no top score
    insert_rows(client, "retrieval_log", columns, rows)
    results = retrieval_drift(client, _request("any-model", signals=(RETRIEVAL_SIGNAL,)))
    by_collection = {r.collection: r for r in results}
    for r in results:
        print(f"retrieval {r.collection}/{r.mode}: ks={r.value:.3f} p={r.p_value:.3g} drifted={r.drifted}")
    assert set(by_collection) == {"manuals", "tickets"}
    assert by_collection["tickets"].drifted and not by_collection["manuals"].drifted
    assert by_collection["manuals"].current_count == 300
    assert {(r.mode, r.note, r.model_version) for r in results} == {("dense", RETRIEVAL_NOTE, "")}
    only = retrieval_drift(
        client, _request("any-model", signals=(RETRIEVAL_SIGNAL,), collections=("manuals",))
    )
    assert [r.collection for r in only] == ["manuals"]


def test_request_is_checked() -> None:
    with pytest.raises(InvalidArgument, match="reference_start"):
        DriftRequest("m", REFERENCE[1], REFERENCE[0], *CURRENT)
    with pytest.raises(InvalidArgument, match="unknown signal"):
        _request("m", signals=("latency",))
    with pytest.raises(InvalidArgument, match="numeric_method"):
        _request("m", numeric_method="sketch")
    naive = DriftRequest("m", REFERENCE[0].replace(tzinfo=None), REFERENCE[1], *CURRENT)
    assert naive.reference_start == REFERENCE[0]


# --- the histogram path ----------------------------------------------------------------------------

BOUNDS = re.compile(r"from hourly histograms: (psi|ks) in \[([0-9.e+-]+), ([0-9.e+-]+)\]")


def _bounds(result: DriftResult) -> tuple[float, float]:
    match = BOUNDS.fullmatch(result.note)
    assert match and match[1] == result.statistic, result.note
    return float(match[2]), float(match[3])


def _log_bins(values: np.ndarray) -> np.ndarray:
    """Migration 0018's bins for timings, in NumPy."""
    return np.where(
        values > 0, np.floor(np.log2(np.where(values > 0, values, 1)) * LOG_BINS_PER_DOUBLING), -100001
    )


def _binned(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    bins = np.union1d(reference, current)
    return (
        np.array([np.sum(reference == b) for b in bins], float),
        np.array([np.sum(current == b) for b in bins], float),
    )


def _slower(g: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return g.lognormal(5.0, 0.4, 4000), 1.2 * g.lognormal(5.0, 0.4, 1500)


def _same(g: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return g.lognormal(3.0, 0.8, 4000), g.lognormal(3.0, 0.8, 1500)


def _bimodal(g: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([g.lognormal(4, 0.2, 2000), g.lognormal(6, 0.2, 2000)]), g.lognormal(5, 0.5, 1500)


def _heavy_tail(g: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    reference = np.concatenate([np.zeros(300), g.pareto(1.5, 3700) * 50])
    return reference, np.concatenate([np.zeros(50), g.pareto(1.2, 1450) * 50])


@pytest.mark.parametrize(
    "name, make",
    [
        ("lognormal timings, 1.2x slower", _slower),
        ("same distribution", _same),
        ("bimodal against unimodal", _bimodal),
        ("zeros and heavy tail", _heavy_tail),
    ],
)
def test_histogram_bounds_hold_the_exact_statistics(name: str, make) -> None:
    """KS and PSI from log-spaced bins: SciPy's / NumPy's exact values lie within the stated bounds."""
    from scipy.stats import ks_2samp

    reference, current = make(np.random.default_rng(17))
    r, c = _binned(_log_bins(reference), _log_bins(current))
    points = np.zeros(len(r), dtype=bool)
    ks_low, ks_high = histogram_ks(r, c, points)
    exact_ks = ks_2samp(reference, current).statistic
    psi = histogram_psi(r, c, points, 1e-4)
    assert psi is not None
    exact_psi = _numpy_psi(reference, current)
    print(
        f"{name}: ks exact={exact_ks:.5f} bins=[{ks_low:.5f}, {ks_high:.5f}]; "
        f"psi exact={exact_psi:.5f} bins={psi[0]:.5f} in [{psi[1]:.5f}, {psi[2]:.5f}]"
    )
    assert ks_low - 1e-12 <= exact_ks <= ks_high + 1e-12
    assert psi[1] - 1e-12 <= exact_psi <= psi[2] + 1e-12
    # The bounds are loose; the values themselves are close (bins are 1.1% wide), PSI within 1%.
    assert abs(ks_low - exact_ks) < 0.01 and abs(psi[0] - exact_psi) < 0.01 * max(1.0, exact_psi)
    # Unit bins of integers are points: exact.
    tokens_r, tokens_c = np.round(reference).astype(int), np.round(current).astype(int)
    r, c = _binned(tokens_r, tokens_c)
    points = np.ones(len(r), dtype=bool)
    assert histogram_ks(r, c, points) == pytest.approx((_numpy_ks(tokens_r, tokens_c),) * 2, abs=1e-12)
    value, low, high = histogram_psi(r, c, points, 1e-4)
    assert value == low == high == pytest.approx(_numpy_psi(tokens_r, tokens_c), abs=1e-12)


@pytest.mark.parametrize("scope", ["model", "group"])
def test_histogram_path_agrees_with_the_exact_path_and_scipy(client: Client, scope: str) -> None:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(8)
    model = f"binned-{scope}"
    reference, current = _traffic(rng, 3000), _traffic(rng, 1200, latency_factor=1.2)
    other = _traffic(rng, 800, latency_factor=2.0, rag=True)
    _insert_answers(client, model, REFERENCE, reference, seed=5)
    _insert_answers(client, model, REFERENCE, other, version=f"{model}/0", arm="other", seed=7)
    _insert_answers(client, model, CURRENT, current, seed=6)
    exact = numeric_drift(client, _request(model, signals=NUMERIC_SIGNALS, reference_scope=scope))
    binned = numeric_drift(
        client, _request(model, signals=NUMERIC_SIGNALS, reference_scope=scope, numeric_method="histograms")
    )
    assert [(r.signal, r.statistic, r.arm) for r in binned] == [(r.signal, r.statistic, r.arm) for r in exact]
    for e, b in zip(exact, binned, strict=True):
        ref = np.asarray(reference[b.signal], float)
        if scope == "model":
            ref = np.concatenate([ref, np.asarray(other[b.signal], float)])
        cur = np.asarray(current[b.signal], float)
        truth = ks_2samp(ref, cur).statistic if b.statistic == "ks" else _numpy_psi(ref, cur)
        low, high = _bounds(b)
        print(f"{scope} {b.signal} {b.statistic}: exact={e.value:.6f} scipy/numpy={truth:.6f} "
              f"histograms={b.value:.6f} in [{low:.6f}, {high:.6f}]")  # fmt: skip
        assert (
            (b.reference_count, b.current_count)
            == (e.reference_count, e.current_count)
            == (len(ref), len(cur))
        )
        assert low - 1e-12 <= truth <= high + 1e-12 and low - 1e-12 <= b.value <= high + 1e-12
        if b.signal in ("prompt_tokens", "completion_tokens"):  # unit bins: exact
            assert b.value == pytest.approx(e.value, abs=1e-9)
            assert (low, high) == pytest.approx((b.value,) * 2, rel=1e-5)  # six digits in the note
            if b.statistic == "ks":  # the same asymptotic p-value as the engine's test
                assert b.p_value == pytest.approx(e.p_value, rel=1e-9, abs=1e-15)
        else:
            assert abs(b.value - e.value) < 0.01
        assert b.drifted == e.drifted


def test_histogram_path_reads_partial_hours_and_redelivered_events_from_rows(client: Client) -> None:
    rng = np.random.default_rng(12)
    model = "redelivered"
    _insert_answers(client, model, REFERENCE, _traffic(rng, 2000), seed=1)
    _insert_answers(client, model, CURRENT, _traffic(rng, 1000, latency_factor=1.3), seed=2)
    # Kafka redelivers the current window's first six hours: the same events are inserted again.
    client.command(
        "INSERT INTO inference_log SELECT * FROM inference_log WHERE model = {m:String} AND occurred_at >= "
        "{s:DateTime64(3, 'UTC')} AND occurred_at < {s:DateTime64(3, 'UTC')} + INTERVAL 6 HOUR",
        parameters={"m": model, "s": CURRENT[0]},
    )
    binned_rows = client.query(
        f"SELECT sum(count) FROM {HISTOGRAM_TABLE} WHERE model = {{m:String}} AND signal = 'latency_ms'",
        parameters={"m": model},
    ).result_rows[0][0]
    assert binned_rows > 3000  # the view counted the redelivered events again; inference_log_v does not
    # Windows that do not start or end on a whole hour.
    half = dt.timedelta(minutes=30)
    windows = (REFERENCE[0] + half, REFERENCE[1] - half, CURRENT[0] + half, CURRENT[1] - half)
    exact = numeric_drift(client, DriftRequest(model, *windows, signals=NUMERIC_SIGNALS))
    binned = numeric_drift(
        client, DriftRequest(model, *windows, signals=NUMERIC_SIGNALS, numeric_method="histograms")
    )
    print(
        f"histogram rows {binned_rows} for 3000 answers; "
        f"counts {binned[0].reference_count}, {binned[0].current_count}"
    )
    for e, b in zip(exact, binned, strict=True):
        assert (b.signal, b.statistic, b.reference_count, b.current_count) == (
            e.signal, e.statistic, e.reference_count, e.current_count,
        )  # fmt: skip
        assert b.note.startswith("from hourly histograms")
        if b.signal in ("prompt_tokens", "completion_tokens"):
            assert b.value == pytest.approx(e.value, abs=1e-9)
        else:
            low, high = _bounds(b)
            assert low - 1e-12 <= e.value <= high + 1e-12
    # No whole hour in the current window: the exact path answers.
    short = (*windows[:2], CURRENT[0] + half, CURRENT[0] + 2 * half)
    fallback = numeric_drift(
        client, DriftRequest(model, *short, signals=("prompt_tokens",), numeric_method="histograms")
    )
    assert fallback == numeric_drift(client, DriftRequest(model, *short, signals=("prompt_tokens",)))
    assert {r.note for r in fallback} == {""}


# --- answers only: requests that failed on the server side are left out ------------------------------


def _insert_failures(
    client: Client, model: str, window: tuple[dt.datetime, dt.datetime], n: int, *, seed: int,
    arm: str = "champion",
) -> None:  # fmt: skip
    """Requests that failed on the server side (0016): a deadline's latency, no output, huge prompts."""
    rng = np.random.default_rng(seed)
    rows = [
        [
            uuid.uuid4(), f"{model}-{arm}-failed-{seed}-{i}", t, model, f"{model}/1", arm, f"failed {i}",
            50_000 + i, 0, 600_000.0 * (1 + i % 3), 0.0, ("DEADLINE_EXCEEDED", "UNAVAILABLE")[i % 2],
        ]
        for i, t in enumerate(_times(rng, window, n))
    ]  # fmt: skip
    insert_rows(client, "inference_log", (*INFERENCE_COLUMNS, "error"), rows)


class _RecordingClient:
    """The client, recording each query's parameters (which hours the histogram path reads from rows)."""

    def __init__(self, client: Client) -> None:
        self.client, self.parameters = client, []

    def query(self, sql: str, parameters: dict | None = None, **kwargs):  # noqa: ANN003, ANN201
        self.parameters.append(dict(parameters or {}))  # the caller adds to its dict later
        return self.client.query(sql, parameters=parameters, **kwargs)


def _comparable(results: list[DriftResult]) -> list[tuple]:
    # Everything but the model version, which names the model.
    return [
        (r.signal, r.statistic, r.arm, r.value, r.p_value, r.drifted, r.reference_count, r.current_count,
         r.status, r.note)
        for r in results
    ]  # fmt: skip


@pytest.mark.parametrize("scope", ["model", "group"])
def test_failed_requests_are_left_out_of_numeric_drift(client: Client, scope: str) -> None:
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(21)
    reference, current = _traffic(rng, 2000), _traffic(rng, 800, latency_factor=1.2)
    answers, failing = f"answers-{scope}", f"failing-{scope}"
    for model in (answers, failing):
        _insert_answers(client, model, REFERENCE, reference, seed=5)
        _insert_answers(client, model, CURRENT, current, seed=6)
    # Failures among the answers in both windows, and an arm that only failed.
    _insert_failures(client, failing, REFERENCE, 300, seed=8)
    _insert_failures(client, failing, CURRENT, 400, seed=9)
    _insert_failures(client, failing, CURRENT, 100, seed=10, arm="broken")
    binned_rows = client.query(
        f"SELECT sum(count) FROM {HISTOGRAM_TABLE} WHERE model = {{m:String}} AND signal = 'latency_ms'",
        parameters={"m": failing},
    ).result_rows[0][0]
    assert binned_rows == 2800  # the view (0019) counts answers only

    for method in ("exact", "histograms"):
        recording = _RecordingClient(client)
        results = numeric_drift(
            recording,
            _request(failing, signals=NUMERIC_SIGNALS, reference_scope=scope, numeric_method=method),
        )
        without = numeric_drift(
            client, _request(answers, signals=NUMERIC_SIGNALS, reference_scope=scope, numeric_method=method)
        )
        assert _comparable(results) == _comparable(without)
        assert {r.arm for r in results} == {"champion"}  # the arm with failures only has no answer
        if method == "histograms":
            # Every hour's histogram count agrees with the answers: no hour is read from the rows.
            assert [p["mismatched"] for p in recording.parameters if "mismatched" in p] == [[]]
        for r in results:
            ref, cur = np.asarray(reference[r.signal], float), np.asarray(current[r.signal], float)
            truth = ks_2samp(ref, cur).statistic if r.statistic == "ks" else _numpy_psi(ref, cur)
            print(
                f"{scope} {method} {r.signal} {r.statistic}: {r.value:.6f} scipy/numpy={truth:.6f} {r.note}"
            )
            assert (r.reference_count, r.current_count) == (2000, 800)
            if method == "exact" or r.signal in ("prompt_tokens", "completion_tokens"):
                assert r.value == pytest.approx(truth, abs=1e-6 if r.statistic == "psi" else 1e-9)
            else:  # timings within one log-spaced bin: SciPy's value lies within the stated bounds
                low, high = _bounds(r)
                assert low - 1e-12 <= truth <= high + 1e-12
                assert abs(r.value - truth) < 0.01


def test_prompt_sample_and_feedback_leave_failures_out(client: Client) -> None:
    rng = np.random.default_rng(22)
    model = "failing-feedback"
    ids = {
        w: _insert_answers(client, model, window, _traffic(rng, 120), seed=seed)
        for w, window, seed in (("reference", REFERENCE, 1), ("current", CURRENT, 2))
    }
    _insert_failures(client, model, CURRENT, 80, seed=3)
    failed = [f"{model}-champion-failed-3-{i}" for i in range(80)]
    # Every answer rated 0.8 in the reference and 0.7 in the current window; failures rated 0.
    scores = [(i, 0.8 if w == "reference" else 0.7) for w in ("reference", "current") for i in ids[w]] + [
        (i, 0.0) for i in failed
    ]
    insert_rows(
        client, "feedback", ("event_id", "request_id", "occurred_at", "score"),
        [[uuid.uuid4(), i, CURRENT[1] - dt.timedelta(minutes=1), score] for i, score in scores],
    )  # fmt: skip
    sample = sample_prompts(client, model, *CURRENT, 1000)
    assert len(sample[(f"{model}/1", "champion")]) == 120
    assert not any(p.startswith("failed") for p in sample[(f"{model}/1", "champion")])
    (shift,) = feedback_drift(client, _request(model, signals=(FEEDBACK_SIGNAL,)))
    assert (shift.reference_count, shift.current_count) == (120, 120)
    assert shift.value == pytest.approx(-0.1)


def test_migration_0019_rebuilds_the_histograms_from_answers_and_its_down_restores_0018(
    client: Client,
) -> None:
    model = "failing-before-0019"

    def binned() -> int:
        return client.query(
            f"SELECT sum(count) FROM {HISTOGRAM_TABLE} WHERE model = {{m:String}} AND signal = 'latency_ms'",
            parameters={"m": model},
        ).result_rows[0][0]

    def down_through_0019() -> list[str]:
        rolled_back: list[str] = []  # newest first: any later migration, then 0019
        while not rolled_back or rolled_back[-1] != "0019_histograms_answers_only":
            name = rollback_migration(client, migrations_dir())
            assert name is not None
            rolled_back.append(name)
        return rolled_back

    rolled_back = down_through_0019()
    try:
        _insert_answers(client, model, CURRENT, _traffic(np.random.default_rng(23), 100), seed=1)
        _insert_failures(client, model, CURRENT, 30, seed=2)
        assert binned() == 130  # 0018's view counts the failures
        assert apply_migrations(client, migrations_dir()) == rolled_back[::-1]
        assert binned() == 100  # 0019 rebuilt the table from the answers, once each
        _insert_failures(client, model, CURRENT, 10, seed=3)
        assert binned() == 100  # and its view leaves new failures out
        rolled_back = down_through_0019()
        assert binned() == 140  # down: 0018's view and contents, failures included
    finally:
        apply_migrations(client, migrations_dir())
    assert binned() == 100


# --- prompt embeddings on real text ----------------------------------------------------------------


def _licence_lines() -> list[str]:
    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    return [line.strip() for line in text.splitlines() if len(line.strip()) > 40]


def _readme_lines() -> list[str]:
    """Lines of the README text inside the installed packages' METADATA (the part after the headers)."""
    lines = []
    for path in sorted(glob.glob(str(Path(np.__file__).parents[1] / "*.dist-info" / "METADATA"))):
        _, _, body = Path(path).read_text(errors="replace").partition("\n\n")
        for line in body.splitlines():
            line = line.strip()
            if len(line) > 40 and line[0].isalpha() and "GNU" not in line and "License" not in line:
                lines.append(line)
    return sorted(set(lines))


@pytest.fixture(scope="module")
def texts() -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    licence, readme = _licence_lines(), _readme_lines()
    assert len(licence) >= 200 and len(readme) >= 100, (len(licence), len(readme))
    licence = [licence[i] for i in rng.permutation(len(licence))[:200]]
    readme = [readme[i] for i in rng.permutation(len(readme))[:100]]
    return {"licence_a": licence[:100], "licence_b": licence[100:], "readme": readme}


@pytest.fixture(scope="module")
def embed():
    from llmops.core.embedding import Embedder  # the platform's all-MiniLM-L6-v2

    return Embedder()


def test_embedding_drift_on_real_text(texts: dict[str, list[str]], embed) -> None:
    licence_a, licence_b, readme = (np.asarray(embed(texts[k])) for k in ("licence_a", "licence_b", "readme"))
    same = embedding_drift(licence_a, licence_b, permutations=1000, seed=0)
    other = embedding_drift(licence_a, readme, permutations=1000, seed=0)
    print(f"GPL-3 vs GPL-3 lines: distance={same.distance:.4f} p={same.p_value:.4f}")
    print(f"GPL-3 vs package README lines: distance={other.distance:.4f} p={other.p_value:.4f}")
    assert other.p_value < 0.01 and other.distance > 5 * same.distance
    assert same.p_value > 0.01
    assert embedding_drift(licence_a, readme, permutations=1000, seed=0) == other  # seeded


def test_prompt_embedding_drift_from_logged_prompts(
    client: Client, texts: dict[str, list[str]], embed
) -> None:
    rng = np.random.default_rng(9)
    model = "embedded"
    _insert_answers(client, model, REFERENCE, _traffic(rng, 100), prompts=texts["licence_a"], seed=1)
    _insert_answers(client, model, CURRENT, _traffic(rng, 100), prompts=texts["licence_b"], seed=2)
    _insert_answers(client, model, CURRENT, _traffic(rng, 100), prompts=texts["readme"], arm="docs", seed=3)
    sample = sample_prompts(client, model, *CURRENT, 60)
    assert {k: len(v) for k, v in sample.items()} == {
        (f"{model}/1", "champion"): 60,
        (f"{model}/1", "docs"): 60,
    }
    assert sample == sample_prompts(client, model, *CURRENT, 60)  # the same sample every time
    assert set(sample[(f"{model}/1", "docs")]) <= set(texts["readme"])
    calls: list[int] = []

    def counting(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        return embed(texts)

    report = drift_report(client, _request(model, signals=("prompt_embedding",)), counting)
    # The pooled reference is embedded once for both groups, each current group once.
    assert sorted(calls) == [100, 100, 100], calls
    for r in report.results:
        print(f"logged prompts {r.arm}: distance={r.value:.4f} p={r.p_value:.4f} drifted={r.drifted}")
    assert [r.arm for r in report.drifted] == ["docs"]
    assert {(r.reference_count, r.current_count) for r in report.results} == {(100, 100)}
    with pytest.raises(InvalidArgument, match="embedding model"):
        drift_report(client, _request(model))


def test_prompt_drift_rates_over_repeated_draws_of_real_text(embed) -> None:
    """The verdict as the drift job gives it (p < embedding_alpha and distance above the minimum),
    over repeated draws: two samples of the same real text (the GPL-3's lines) against a sample of it
    and one of another distribution (package README lines)."""
    t = DriftThresholds()
    rng = np.random.default_rng(21)
    # Pools of 300 and 150 lines, embedded once (MiniLM on the CPU); each draw takes samples of them.
    licence = [_licence_lines()[i] for i in rng.permutation(len(_licence_lines()))[:300]]
    readme = [_readme_lines()[i] for i in rng.permutation(len(_readme_lines()))[:150]]
    vectors = {"licence": np.asarray(embed(licence)), "readme": np.asarray(embed(readme))}
    draws, n = 20, 60

    def flagged(a: np.ndarray, b: np.ndarray, seed: int) -> bool:
        found = embedding_drift(a, b, permutations=500, seed=seed)
        return found.p_value < t.embedding_alpha and found.distance > t.embedding_min_distance

    same = other = 0
    for draw in range(draws):
        picked = rng.permutation(len(licence))[: 2 * n]
        a, b = vectors["licence"][picked[:n]], vectors["licence"][picked[n:]]
        c = vectors["readme"][rng.permutation(len(readme))[:n]]
        same += flagged(a, b, draw)
        other += flagged(a, c, draw)
    print(
        f"prompt drift over {draws} draws of {n} real lines each: false-positive rate {same / draws:.2f} "
        f"(GPL-3 against GPL-3), detection rate {other / draws:.2f} (GPL-3 against README lines)"
    )
    assert same / draws <= 0.1
    assert other / draws >= 0.9
