import random

from backend.jobs.queries import QUERIES, parse_queries
from backend.jobs.retry import backoff_delay


def test_parse_queries_drops_descriptions() -> None:
    parsed = parse_queries("-- a --\n-- does a\nSELECT 1;\n\n-- b --\n-- does b\nSELECT\n  2;\n")
    assert parsed == {"a": "SELECT 1", "b": "SELECT\n  2"}


def test_shipped_queries_are_named() -> None:
    assert {"claim_jobs", "heartbeat", "finish_job", "retry_job", "requeue_expired"} <= set(QUERIES)
    assert all(sql and not sql.startswith("--") for sql in QUERIES.values())


def test_backoff_grows_and_is_jittered() -> None:
    rng = random.Random(1)
    delays = [[backoff_delay(attempt, base=1.0, rng=rng) for attempt in (1, 2, 3)] for _ in range(200)]
    for first, second, third in delays:
        assert 0.5 <= first <= 1.0
        assert 1.0 <= second <= 2.0
        assert 2.0 <= third <= 4.0
    assert len({round(d[0], 6) for d in delays}) > 100
    assert backoff_delay(30, cap=60.0) <= 60.0
