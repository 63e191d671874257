"""What the statements of a piece of code cost the server, counted from their plans.

`PlanProfile` hooks a connection: before each query statement runs, it is planned (plain
EXPLAIN) and run once under EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) inside a savepoint that is
rolled back, then the statement itself runs as usual. It counts the rows every plan node
handled (returned or filtered out, times its loops) and the buffers touched: figures that
depend on the plan, not on the machine's speed or load, so a test can compare two runs as a
ratio without a clock.

Plans with a nested loop that compares every pair of rows over a scan of a watched table are
refused before they run: that is the plan whose cost grows with the square of the rows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, event

# Statements that EXPLAIN accepts and that can read a table.
_EXPLAINABLE = re.compile(
    r"^\s*(WITH|SELECT|UPDATE|DELETE|INSERT|CREATE TEMP TABLE \w+ ON COMMIT DROP AS)\b",
    re.IGNORECASE,
)


class QuadraticPlan(AssertionError):
    """A statement was planned as a nested loop over a whole table."""


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _unindexed_scans(plan: dict[str, Any], tables: set[str]) -> list[str]:
    return [
        f"{node['Node Type']} on {node['Relation Name']}"
        for node in _nodes(plan)
        if node.get("Relation Name") in tables
        and "Index Cond" not in node
        and "Recheck Cond" not in node
    ]


def nested_loops_over(plan: dict[str, Any], tables: set[str]) -> list[str]:
    """Scans of `tables` without an index condition under a nested loop that compares every
    pair of rows (a Join Filter: no index drives its inner side)."""
    found: list[str] = []
    for node in _nodes(plan):
        if node["Node Type"] == "Nested Loop" and "Join Filter" in node:
            for child in node.get("Plans", []):
                found += _unindexed_scans(child, tables)
    return found


@dataclass
class PlanProfile:
    tables: set[str]
    rows: int = 0
    buffers: int = 0
    statements: int = 0
    plans: list[dict[str, Any]] = field(default_factory=list)

    def _explain(self, cursor: Any, options: str, statement: str, parameters: Any) -> Any:
        cursor.execute(f"EXPLAIN ({options}, FORMAT JSON) {statement}", parameters)
        document = cursor.fetchone()[0]
        return (json.loads(document) if isinstance(document, str) else document)[0]

    def before(self, dbapi_connection: Any, statement: str, parameters: Any) -> None:
        if not _EXPLAINABLE.match(statement):
            return
        with dbapi_connection.cursor() as cursor:
            planned = self._explain(cursor, "COSTS ON", statement, parameters)
            if loops := nested_loops_over(planned["Plan"], self.tables):
                first_words = " ".join(statement.split())[:80]
                raise QuadraticPlan(f"{loops} in: {first_words}")
            cursor.execute("SAVEPOINT plan_profile")
            try:
                measured = self._explain(
                    cursor, "ANALYZE, BUFFERS, TIMING OFF", statement, parameters
                )
            finally:
                cursor.execute("ROLLBACK TO SAVEPOINT plan_profile")
        self.statements += 1
        self.plans.append(measured)
        top = measured["Plan"]
        self.buffers += top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
        for node in _nodes(top):
            handled = (
                node.get("Actual Rows", 0)
                + node.get("Rows Removed by Filter", 0)
                + node.get("Rows Removed by Join Filter", 0)
                + node.get("Rows Removed by Index Recheck", 0)
            )
            self.rows += int(handled * node.get("Actual Loops", 1))

    def attach(self, conn: Connection) -> None:
        def _before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if not executemany:
                self.before(cursor.connection, statement, parameters)

        event.listen(conn, "before_cursor_execute", _before)
