"""A vitals row that breaks the copy step every time, for the bisection tests."""

from __future__ import annotations

from sqlalchemy import Engine, text


def insert_poison_row(engine: Engine, user_id: int) -> None:
    """A row a backend inserted itself, past every ingest check: converting it overflows double
    precision inside the copy step, every time."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO vitals_raw_data (user_id, metric, value, unit, start_time) "
                "VALUES (:user_id, 'blood_glucose', 1e308, 'mmol/L', '2024-03-10T05:00:00+00')"
            ),
            {"user_id": user_id},
        )
