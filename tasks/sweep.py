"""The claim sweep: who has rows claimed by an execution that no longer runs.

An execution that ends without reaching MarkClaimFailed (an Express execution cut at its time
limit, `States.Runtime` or `States.DataLimitExceeded`, which `States.ALL` does not catch, a
SendToDeadLetterQueue that failed) leaves its rows `processing`. The next claim for that user
and domain takes them over once the claim's lease is over (`tasks.lifecycle.stale_claims`);
the sweep (`statemachines/sweep.asl.json`, on a schedule) sends that next trigger instead of
waiting for the user's next upload. It returns ids and domains only.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from tasks.lifecycle import table_of
from tasks.settings import get_settings
from tasks.steps.models import JOB_OF_DOMAIN

#: Users redriven per sweep at most: the Map's input stays far below the 256 KiB payload limit
#: (a trigger is about 70 bytes); the rest waits for the next hour.
MAX_TRIGGERS = 1_000


@dataclass(frozen=True)
class ExpiredClaim:
    domain: str
    user_id: int

    @property
    def job_type(self) -> str:
        return JOB_OF_DOMAIN[self.domain]


def expired_claims(conn: Connection, *, limit: int = MAX_TRIGGERS) -> list[ExpiredClaim]:
    """(domain, user) pairs with `processing` rows whose claim's lease is over, oldest first.

    The same lease rule as the claim's takeover (`lifecycle.stale_claims`): the claim's
    recorded lease end, else its claim time plus `claim_lease_seconds`."""
    found: list[ExpiredClaim] = []
    lease = get_settings().claim_lease_seconds
    for domain in JOB_OF_DOMAIN:
        if len(found) >= limit:
            break
        rows = conn.execute(
            text(
                f"""
                SELECT held.user_id
                FROM (SELECT user_id, claim_id, max(claimed_at) AS claimed_at
                      FROM {table_of(domain)}
                      WHERE status = 'processing'
                      GROUP BY user_id, claim_id) held
                LEFT JOIN claims c ON c.claim_id = held.claim_id
                WHERE COALESCE(c.lease_expires_at,
                               held.claimed_at + make_interval(secs => :lease)) < now()
                GROUP BY held.user_id
                ORDER BY min(held.claimed_at), held.user_id
                LIMIT :limit
                """
            ),
            {"lease": lease, "limit": limit - len(found)},
        ).all()
        found += [ExpiredClaim(domain, int(row.user_id)) for row in rows]
    return found
