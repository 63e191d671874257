#!/bin/bash
# 1,000 messages through `healthflow run`, the command line a user runs, against direct mode
# (`healthflow process`) on a second copy of the same data; then every export of both, diffed.
#
#   bash bench/cli_burst.sh [USERS] [DUPLICATES]      (default 200 users, 400 duplicates)
#
# `run` finds each user's three domains pending (3 x USERS triggers); DUPLICATES more triggers
# for random users and domains are spooled beside them, as repeated uploads would send. Each
# side has its own data directory and embedded PostgreSQL under a temporary folder, deleted at
# the end unless KEEP=1. Exits 1 if `run` fails, a raw row is left unsettled or an export differs.
set -euo pipefail
USERS=${1:-200}
DUPLICATES=${2:-400}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HF=$ROOT/.venv/bin/healthflow
PY=$ROOT/.venv/bin/python
WORK=$(mktemp -d -t hf-cli-burst-XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
"$HF" sample --users "$USERS" --days 4 --rate light --start 2024-03-28 --out data > /dev/null
for side in run direct; do
  export HEALTHFLOW_DATA_DIR=$WORK/$side
  "$HF" db upgrade > /dev/null
  for kind in users labs vitals nutrition; do "$HF" ingest "$kind" "data/$kind.jsonl" > /dev/null; done
done

export HEALTHFLOW_DATA_DIR=$WORK/run
"$PY" - "$DUPLICATES" <<'PY'
import json, random, sys
from tasks.cli_workflow import _store
from tasks.domains import DOMAINS_IN_ORDER
users = [json.loads(line)["user_id"] for line in open("data/users.jsonl")]
rng = random.Random(11)
store = _store()
for _ in range(int(sys.argv[1])):
    domain = rng.choice(DOMAINS_IN_ORDER)
    store.enqueue(json.dumps({"job_type": f"process_pending_{domain}", "user_id": rng.choice(users)}))
PY
SECONDS=0
"$HF" run > run.log 2>&1 || { tail -5 run.log; echo "healthflow run FAILED"; exit 1; }
run_s=$SECONDS
grep '^summary:' run.log

export HEALTHFLOW_DATA_DIR=$WORK/direct
SECONDS=0
"$HF" process > process.log
direct_s=$SECONDS
tail -1 process.log

unsettled=0
for side in run direct; do
  export HEALTHFLOW_DATA_DIR=$WORK/$side
  mkdir -p "exports-$side"
  for spec in vitals:hourly vitals:daily vitals:weekly vitals:monthly labs:daily labs:monthly \
              labs:quarterly labs:yearly nutrition:daily nutrition:weekly nutrition:monthly; do
    "$HF" export "${spec%%:*}" --granularity "${spec##*:}" > "exports-$side/${spec/:/-}.csv" 2>/dev/null
  done
  left=$("$PY" -c "
from sqlalchemy import text
from tasks.db.engine import get_engine
with get_engine().connect() as c:
    print(sum(c.execute(text(f\"SELECT count(*) FROM {t} WHERE status IN ('pending', 'processing', 'failed')\")).scalar_one()
              for t in ('lab_report_raw', 'vitals_raw_data', 'nutrition_raw_data')))
" 2>/dev/null)
  echo "$side: raw rows left pending, processing or failed: $left"
  unsettled=$((unsettled + left))
done
echo "healthflow run ${run_s} s, healthflow process ${direct_s} s (wall, each with its start-up)"
if diff -r exports-run exports-direct > /dev/null && [ "$unsettled" = 0 ]; then
  echo "PASS: $(ls exports-run | wc -l) exports identical ($(cat exports-run/*.csv | wc -l) lines)"
else
  echo "FAIL: exports differ or rows are unsettled"; exit 1
fi
