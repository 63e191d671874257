"""A claim's statements cost the same whether or not the planner knows the table's size.

Right after a bulk load the statistics can say a raw table is empty (never analyzed, or
autoanalyzed mid-load). The claim, the copy and the mark must then still find their rows by
index and cost what they cost on an analyzed table. Cost here is counted from the plans (rows
every plan node handled, buffers), never timed: see tests/support/plans.py.
"""

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from tasks import aggregation, lifecycle
from tests.support.plans import PlanProfile

ROWS = 50_000
TABLES = ("vitals_raw_data", "vitals_categorized")


@pytest.fixture
def no_autovacuum(engine: Engine) -> Iterator[Engine]:
    """Only the test decides what the planner believes about the tables."""
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = off)"))
    yield engine
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"ALTER TABLE {table} RESET (autovacuum_enabled)"))


def _load(engine: Engine, *, analyzed: bool) -> None:
    """One user's ROWS readings, one in a hundred in a unit that copy rejects."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
        conn.execute(
            text(
                """
                INSERT INTO vitals_raw_data (user_id, metric, value, unit, start_time)
                SELECT 1, 'heart_rate', 60 + i % 40,
                       CASE WHEN i % 100 = 0 THEN 'furlong' ELSE 'bpm' END,
                       timestamptz '2024-01-01' + i * interval '1 min'
                FROM generate_series(1, :rows) i
                """
            ),
            {"rows": ROWS},
        )
        for table in TABLES:
            if analyzed:
                conn.execute(text(f"ANALYZE {table}"))
                continue
            # What a fresh database says after a bulk load: an empty table that has pages.
            oid = {"table": table}
            conn.execute(
                text("DELETE FROM pg_statistic WHERE starelid = CAST(:table AS regclass)"), oid
            )
            conn.execute(
                text(
                    "UPDATE pg_class SET reltuples = 0, relpages = 60 "
                    "WHERE oid = CAST(:table AS regclass)"
                ),
                oid,
            )


def _claim(conn: Connection) -> None:
    summary = lifecycle.claim_pending(conn, domain="vitals", user_id=1, claim_id="bulk")
    assert summary.claimed == ROWS


def _copy(conn: Connection) -> None:
    copied = aggregation.copy_vitals_to_categorized(conn, claim_id="bulk", user_id=1)
    assert (copied.copied, copied.rejected) == (ROWS - ROWS // 100, ROWS // 100)


def _mark(conn: Connection) -> None:
    assert lifecycle.mark_aggregated(conn, domain="vitals", claim_id="bulk") == ROWS - ROWS // 100


def _process(engine: Engine, *, analyzed: bool) -> PlanProfile:
    _load(engine, analyzed=analyzed)
    profile = PlanProfile(set(TABLES))
    steps: tuple[Callable[[Connection], None], ...] = (_claim, _copy, _mark)
    for run in steps:
        with Session(engine) as session, session.begin():
            conn = session.connection()
            profile.attach(conn)
            run(conn)
    return profile


def test_a_claim_after_a_bulk_load_costs_what_it_costs_on_an_analyzed_table(
    no_autovacuum: Engine,
) -> None:
    stale = _process(no_autovacuum, analyzed=False)
    analyzed = _process(no_autovacuum, analyzed=True)
    # The old claim was planned, on the stale table, as a nested loop over the whole primary
    # key (refused by the profile before it runs: it took 10 s for 10,000 rows, 37 s for 20,000).
    assert stale.statements == analyzed.statements
    print(f"rows handled: stale {stale.rows:,}, analyzed {analyzed.rows:,}")
    print(f"buffers: stale {stale.buffers:,}, analyzed {analyzed.buffers:,}")
    # Linear in both cases; a plan that compares every row with every row handles 50,000 times
    # more.
    assert stale.rows <= 2 * analyzed.rows


def test_a_bulk_ingest_leaves_the_table_analyzed(no_autovacuum: Engine) -> None:
    from tasks.ingest import ANALYZE_MIN_ROWS, ingest_lines

    def believed() -> float:
        with no_autovacuum.connect() as conn:
            return conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = 'vitals_raw_data'::regclass")
            ).scalar_one()

    def lines(n: int, day: int) -> list[str]:
        return [
            f'{{"user_id": 1, "metric": "heart_rate", "value": 70, "unit": "bpm", '
            f'"start_time": "2024-03-{day:02d}T00:00:00+00:00", "entry_id": "{day}-{i}"}}'
            for i in range(n)
        ]

    _load(no_autovacuum, analyzed=False)  # the planner believes the table is empty
    ingest_lines(no_autovacuum, "vitals", lines(ANALYZE_MIN_ROWS - 1, 1))
    assert believed() == 0  # a small file leaves the statistics alone
    ingest_lines(no_autovacuum, "vitals", lines(ANALYZE_MIN_ROWS, 2))
    assert believed() == ROWS + 2 * ANALYZE_MIN_ROWS - 1
