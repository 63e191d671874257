"""Workflow commands: run, send, start-execution, trace, dlq, graph, cost.

`--target local` acts on the local cloud (moto in this process; what must outlive the process is
kept by `LocalStore` under the data directory); `--target aws --env NAME` on the deployed stack,
whose addresses are read from SSM under /healthflow/NAME/ (HEALTHFLOW_QUEUE_URL,
HEALTHFLOW_DEAD_LETTER_QUEUE_URL and HEALTHFLOW_STATE_MACHINE_ARN override them), in the region
of AWS_REGION or boto3's default chain.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from tasks import cli_args
from tasks.cli_args import PrerequisiteMissing, UsageError
from tasks.domains import DOMAINS_IN_ORDER
from tasks.progress import Progress
from tasks.settings import get_settings
from tasks.steps.models import JOB_OF_DOMAIN, TriggerMessage
from tasks.workflow import (
    LocalStore,
    format_trace,
    mermaid,
)


def _store() -> LocalStore:
    from tasks.db.engine import database_key

    settings = get_settings()
    return LocalStore(settings.data_dir / "localcloud" / database_key(settings))


def _aws(service: str) -> Any:
    from tasks.aws import client

    return client(service)


def _addresses(args: argparse.Namespace) -> Any:
    from tasks.aws import stack_addresses

    return stack_addresses(env=getattr(args, "env", None))


def _target(args: argparse.Namespace) -> str:
    return str(args.target or get_settings().target)


# ---------------------------------------------------------------------------- run


def _ingest_demo_data(engine: Any) -> None:
    from tasks.ingest import ingest_file
    from tasks.sample import write_sample_dataset

    # Same seed, same files: kept in the data directory (not the system temp dir), overwritten
    # by the next demo run; entry ids make a second ingest of them a no-op.
    out = get_settings().data_dir / "demo"
    paths = write_sample_dataset(out, 4, date(2024, 3, 4), 14, 7, "light")
    for domain in ("users", "labs", "vitals", "nutrition"):
        print(f"  ingest {ingest_file(engine, domain, paths[domain]).summary()}")


def _summary(engine: Any) -> list[str]:
    from sqlalchemy import text

    lines = []
    with engine.connect() as conn:
        for domain, table in (("labs", "lab_report_raw"), ("vitals", "vitals_raw_data"),
                              ("nutrition", "nutrition_raw_data")):  # fmt: skip
            counts = dict(
                conn.execute(text(f"SELECT status, count(*) FROM {table} GROUP BY 1")).all()
            )
            described = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no rows"
            lines.append(f"  {domain:<9} rows: {described}")
        from tasks.aggregation import GRANULARITIES, aggregate_table

        for domain, levels in GRANULARITIES.items():
            sizes = []
            for level in levels:
                table = aggregate_table(domain, level)
                count = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                sizes.append(f"{level} {count}")
            lines.append(f"  {domain:<9} buckets: {', '.join(sizes)}")
        categorized = dict(
            conn.execute(
                text("SELECT status, count(*) FROM lab_report_categorized GROUP BY 1")
            ).all()
        )
        lines.append(
            f"  labs      categorized {categorized.get('categorized', 0)}, "
            f"left for review {categorized.get('uncategorized', 0)}"
        )
    return lines


def cmd_run(args: argparse.Namespace) -> int:
    from tasks.db.engine import get_engine
    from tasks.db.migrate import ensure_current, upgrade
    from tasks.localcloud.cloud import LocalCloud
    from tasks.process import pending_work

    settings = get_settings()
    where = settings.database_url and "the database HEALTHFLOW_DATABASE_URL names"
    print(f"data directory: {settings.data_dir}")
    print(f"database: {where or f'embedded PostgreSQL in {settings.embedded_pgdata}'}")
    engine = get_engine()
    if args.demo:
        print("demo: applying migrations and ingesting a synthetic dataset")
        upgrade(engine)
        _ingest_demo_data(engine)
    ensure_current(engine)
    store = _store()
    started = time.perf_counter()
    max_attempts = settings.max_attempts
    with LocalCloud() as cloud:
        work = pending_work(list(DOMAINS_IN_ORDER), None)
        # Write-ahead: the spool keeps its lines until their executions have ended.
        queued = store.queued()
        results: list[Any] = []
        dead_letters = 0
        strikes: dict[tuple[str, int], int] = {}
        sweeps = 0
        while sweeps == 0 or (work and sweeps < MAX_SWEEPS):
            sweeps += 1
            swept = _sweep(cloud, store, work, queued if sweeps == 1 else [], sweeps)
            results += [result for result, _ in swept]
            dead = cloud.dlq_messages()
            store.add_dead_letters(d.body for d in dead)
            for dead_letter in dead:
                cloud.delete_dead_letter(dead_letter)
            dead_letters += len(dead)
            # A failed claim is swept again at once while it narrows a fault down (a failed
            # half of a bisection) or has strikes left, as `process` retries it: one row that
            # breaks a step is set aside in one `run`, not one halving per `run`. A fault
            # every claim meets stops after `max_attempts` strikes, for the next run.
            failed = _count_strikes(swept, strikes)
            again = {key for key in failed if strikes.get(key, 0) < max_attempts}
            work = [key for key in pending_work(list(DOMAINS_IN_ORDER), None) if key in again]
        store.ack_queued(queued)
    ok = sum(r.succeeded for r in results)
    elapsed = time.perf_counter() - started
    print(
        f"\nsummary: {len(results)} executions, {ok} succeeded, {len(results) - ok} failed, "
        f"{dead_letters} to the dead-letter queue, {sweeps} {'sweep' if sweeps == 1 else 'sweeps'}"
        f", {elapsed:.1f} s"
    )
    print("\n".join(_summary(engine)))
    if not settings.database_url:
        size = _megabytes(settings.embedded_pgdata)
        print(f"embedded PostgreSQL: {size:,.0f} MB in {settings.embedded_pgdata}")
    print(f"local cloud state (traces, dead letters): {store.root}")
    print(f"export with: {_cli_name()} export vitals --granularity daily")
    return 0 if ok == len(results) else 1


# A bound on `run`'s sweeps, whatever the strikes say: a fault that comes and goes resets them.
MAX_SWEEPS = 64


# An execution as a sweep saw it: how it ended, and what its claim state reported (or None).
Swept = tuple[Any, tuple[tuple[str, int], dict[str, Any]] | None]


def _sweep(
    cloud: Any, store: LocalStore, work: list[tuple[str, int]], queued: list[Any], sweep: int
) -> list[Swept]:
    """Send a trigger per (domain, user) of `work` (and the spooled messages), drain them
    through the state machine, print each execution's trace; return how they ended, each with
    its claim."""
    triggers = 0
    with Progress(len(work), unit="triggers", description="enqueue") as enqueued:
        for domain, user_id in work:
            cloud.send_message({"job_type": JOB_OF_DOMAIN[domain], "user_id": user_id})
            triggers += 1
            enqueued.update(1)
    for body in queued:
        cloud.send_message(body)
        triggers += 1
    noun = "message" if triggers == 1 else "messages"
    if sweep == 1:
        print(f"local cloud: {triggers} {noun} queued; draining through the state machine")
    else:
        print(f"sweep {sweep}: {triggers} {noun} for claims that failed; draining again")
    # Traces print once every execution has ended; until then a line every few seconds
    # (a bar on a terminal) says how far the drain is.
    with Progress(triggers, unit="executions", description="drain") as progress:

        def finished(result: Any) -> None:
            progress.update(1)
            if _continues(result):  # its continuation is one more execution to wait for
                progress.grow(1)

        results = cloud.drain(on_finished=finished)
    swept: list[Swept] = []
    for result in results:
        lines, claimer_events = _keep(store, cloud, result)
        print("\n".join(lines))
        swept.append((result, _claim_in(claimer_events)))
    return swept


_CLAIM_STATE = re.compile(r"^ClaimPending(Vitals|Nutrition|Labs)$")


def _claim_in(events: list[Any]) -> tuple[tuple[str, int], dict[str, Any]] | None:
    """The (domain, user) an execution claimed for, and its claim state's output (counts and
    flags only); None when it claimed nothing (an invalid message, a database down)."""
    found = None
    for event in events:
        details = event.get("stateExitedEventDetails") or {}
        match = _CLAIM_STATE.match(details.get("name") or "")
        if match is None:
            continue
        claim = json.loads(details.get("output") or "{}").get("claim")
        if isinstance(claim, dict) and isinstance(claim.get("ids"), dict):
            found = ((match.group(1).lower(), int(claim["ids"]["user_id"])), claim)
    return found


def _count_strikes(swept: list[Swept], strikes: dict[tuple[str, int], int]) -> set[tuple[str, int]]:
    """Count strikes against each (domain, user) whose claim failed, as `process_user` counts
    them (`counts_as_strike`); a success clears them. Returns the pairs whose last claim of the
    sweep failed."""
    from tasks.process import counts_as_strike

    failed: set[tuple[str, int]] = set()
    for result, found in swept:
        if found is None:
            continue
        key, claim = found
        if result.succeeded:
            strikes[key] = 0
            failed.discard(key)
            continue
        claimed = int(claim.get("claimed") or 0)
        if counts_as_strike(isolated=bool(claim.get("isolated")), claimed=claimed):
            strikes[key] = strikes.get(key, 0) + 1
        failed.add(key)
    return failed


def _megabytes(folder: Path) -> float:
    """The size of the files under `folder` (what the README would otherwise have to guess)."""
    total = 0
    for root, _, files in os.walk(folder, onerror=lambda _: None):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total / 1e6


def _continues(result: Any) -> bool:
    """Whether an execution (or the labs execution it started) queued its own continuation:
    a bounded claim that left rows, or suspects still to bisect."""
    outputs = [result.output, result.child.output if result.child is not None else None]
    return any(
        isinstance(output, dict)
        and isinstance(output.get("claim"), dict)
        and bool(output["claim"].get("more_pending"))
        for output in outputs
    )


def _cli_name() -> str:
    """How this user calls the CLI: the bare name when it is on PATH, else the venv's path."""
    import shutil
    import sys

    script = Path(sys.executable).parent / "healthflow"
    on_path = shutil.which("healthflow")
    if on_path and Path(on_path).resolve() == script.resolve():
        return "healthflow"
    if not script.exists():
        return "healthflow"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


# ---------------------------------------------------------------------------- send / start


def _message(args: argparse.Namespace) -> TriggerMessage:
    reprocess = None
    if args.command == "start-execution":
        # Without --from/--to a reprocess covers every row of the user and domain.
        cli_args.date_range(args.date_from, args.date_to)
        date_from, date_to = args.date_from or date.min, args.date_to or date.max
        reprocess = {"from": date_from.isoformat(), "to": date_to.isoformat()}
    return TriggerMessage.model_validate(
        {
            "job_type": JOB_OF_DOMAIN[args.domain],
            "user_id": args.user_id,
            "priority": args.priority,
            "reprocess": reprocess,
        }
    )


def cmd_send(args: argparse.Namespace) -> int:
    message = _message(args)
    if _target(args) == "aws":
        from tasks.producer import aws_trigger_client

        settings = get_settings()
        if args.env:
            settings = settings.model_copy(update={"env": args.env})
        message_id = aws_trigger_client(settings).send(
            message.job_type, message.user_id, priority=message.priority
        )
        print(
            f"sent {message_id}"
            if message_id
            else f"not sent: {SWITCH_OFF}, or the SSM parameter /healthflow/ENV/enabled"
        )
    else:
        from tasks.producer import TriggerClient

        store = _store()

        class LocalSpool:
            def send(self, body: str) -> str:
                store.enqueue(body)
                return "local"

        client = TriggerClient(LocalSpool(), enabled=get_settings().enabled)
        if client.send(message.job_type, message.user_id, priority=message.priority) is None:
            print(f"not sent: {SWITCH_OFF}")
        else:
            print("queued on the local cloud; `healthflow run` delivers it")
    return 0


SWITCH_OFF = "the enabled switch is off (HEALTHFLOW_ENABLED or ML_WORKER_ENABLED is false)"


def cmd_start_execution(args: argparse.Namespace) -> int:
    message = _message(args)
    name = args.name or f"reprocess-{args.domain}-{args.user_id}-{uuid.uuid4().hex[:8]}"
    execution_input = json.loads(message.to_json_body())
    if _target(args) == "aws":
        sfn = _aws("stepfunctions")
        arn = sfn.start_execution(
            stateMachineArn=_addresses(args).require("state_machine_arn"),
            name=name,
            input=json.dumps(execution_input),
        )["executionArn"]
        print(f"started {arn}")
        return 0
    from tasks.localcloud.cloud import LocalCloud

    with LocalCloud() as cloud:
        result = cloud.wait(cloud.start_execution(execution_input, name))
        lines = _keep_and_trace(_store(), cloud, result)
        dead = cloud.dlq_messages()
        _store().add_dead_letters(d.body for d in dead)
    print("\n".join(lines))
    return 0 if result.succeeded else 1


def _keep_and_trace(store: LocalStore, cloud: Any, result: Any) -> list[str]:
    """Save an execution (and its labs child) for `trace`; return its timeline."""
    return _keep(store, cloud, result)[0]


def _keep(store: LocalStore, cloud: Any, result: Any) -> tuple[list[str], list[Any]]:
    """Save an execution (and its labs child) for `trace`; return its timeline and the history
    of the execution that claimed (the labs child's, when there is one)."""
    events = cloud.history(result.execution_arn)
    child = None
    claimer_events = events
    if result.child is not None:
        claimer_events = cloud.history(result.child.execution_arn)
        child = (result.child.name, result.child.status, claimer_events)
    store.save_execution(result.name, result.status, events, child=child)
    record = store.load_execution(result.name)
    return _format_record(record), claimer_events


def _format_record(record: dict[str, Any]) -> list[str]:
    return format_trace(
        record["name"], record["status"], record["events"], record.get("child"),
        subject=record.get("subject"),
    )  # fmt: skip


# ---------------------------------------------------------------------------- trace / dlq


def cmd_trace(args: argparse.Namespace) -> int:
    if _target(args) == "aws":
        sfn = _aws("stepfunctions")
        arn = args.execution
        described = sfn.describe_execution(executionArn=arn)
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events += page["events"]
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        print("\n".join(format_trace(described["name"], described["status"], events)))
        return 0
    print("\n".join(_format_record(_store().load_execution(args.execution))))
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from tasks import deadletters

    if args.action != "purge" and (args.all or args.error or args.user_id or args.yes):
        raise UsageError("--all, --error, --user-id and --yes go with `dlq purge` only")
    if _target(args) == "aws":
        addresses = _addresses(args)
        sqs = _aws("sqs")
        queue = deadletters.SqsDeadLetters(sqs, addresses.require("dead_letter_queue_url"))
        if args.action == "purge":
            received = queue.receive_all()
            chosen = [r for r in received if _purged(args, r.letter)]
            purge = _confirmed(args, [r.letter for r in chosen], len(received))
            for each in chosen if purge else []:
                queue.delete(each)
            queue.release(r for r in received if not (purge and r in chosen))
            return 0
        if args.action == "list":
            letters = deadletters.sqs_list(queue)
        else:
            result = deadletters.sqs_redrive(queue, sqs, addresses.require("queue_url"))
            print(result.summary())
            return 0
    else:
        store = _store()
        if args.action == "redrive":
            result = deadletters.redrive_local(store)
            print(result.summary())
            if result.redriven:
                print("`healthflow run` delivers the redriven triggers")
            return 0
        letters = [deadletters.classify(body) for body in store.list_dead_letters()]
        if args.action == "purge":
            chosen_at = [i for i, letter in enumerate(letters) if _purged(args, letter)]
            if _confirmed(args, [letters[i] for i in chosen_at], len(letters)):
                store.remove_dead_letters(chosen_at)
            return 0
    kinds = {kind: sum(1 for letter in letters if letter.kind == kind)
             for kind in ("workflow", "queue", "local-queue")}  # fmt: skip
    described = ", ".join(f"{n} {kind}" for kind, n in kinds.items() if n)
    print(f"{len(letters)} dead letters" + (f" ({described})" if described else ""))
    for letter in letters:
        print("  " + letter.describe())
    return 0


def _purged(args: argparse.Namespace, letter: Any) -> bool:
    """Whether `dlq purge` with these filters takes this dead letter."""
    if not (args.all or args.user_id) and letter.message is not None:
        return False  # by default only what redrive can never resend
    if args.error and letter.error != args.error:
        return False
    return not args.user_id or (
        letter.message is not None and letter.message.user_id == args.user_id
    )


def _confirmed(args: argparse.Namespace, chosen: list[Any], total: int) -> bool:
    """List what a purge would delete and ask (or take --yes); False leaves everything."""
    import sys

    if not chosen:
        which = "" if args.all or args.user_id else " that can never be redriven (--all for any)"
        print(f"nothing to purge: 0 of {total} dead letters match{which}")
        return False
    print(f"{len(chosen)} of {total} dead letters to purge:")
    for letter in chosen:
        print("  " + letter.describe())
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"purging {len(chosen)} dead letters needs --yes when not asked on a terminal"
            )
        answer = input(f"purge these {len(chosen)} dead letters for good? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing purged")
            return False
    print(f"purged {len(chosen)} dead letters")
    return True


# ---------------------------------------------------------------------------- graph / cost


def cmd_graph(args: argparse.Namespace) -> int:
    from tasks.statemachines import LABS_ASL

    definition = json.loads(get_settings().state_machine_file.read_text(encoding="utf-8"))
    chart = mermaid(definition, json.loads(LABS_ASL.read_text(encoding="utf-8")))
    if args.output:
        Path(args.output).write_text(chart + "\n", encoding="utf-8")
    else:
        print(chart)
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    from tasks import cost

    if args.template:
        text = Path(args.template).read_text(encoding="utf-8")
        source = args.template
        try:
            shape = cost.stack_shape(json.loads(text))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(
                f"--template {args.template} is not a synthesized CloudFormation template"
            ) from None
    else:
        import shutil

        if shutil.which("node") is None:
            # jsii starts Node.js at the first CDK import; without it the import fails with a
            # traceback from inside jsii.
            raise PrerequisiteMissing(
                "healthflow cost synthesizes the stack with CDK, whose jsii runtime needs "
                "Node.js: install node (20+), or pass --template cdk.out/STACK.template.json"
            )
        print(
            "pricing the default stack as `cdk synth` builds it (offline; cached in "
            f"{Path(tempfile.gettempdir()) / 'healthflow-cost'})"
        )
        shape = cost.stack_shape(cost.synthesized_template())
        source = "cdk synth, no context"
    print(
        f"stack ({source}): Lambda {shape.lambda_architecture} {shape.lambda_memory_mb} MB, "
        f"ml-worker {shape.task_cpu_units / 1024:g} vCPU / {shape.task_memory_mib / 1024:g} GB "
        f"{shape.task_architecture}, {shape.interface_endpoint_azs} interface endpoint-AZs, "
        f"{shape.nat_gateways} NAT, {shape.alarm_metrics} alarm metrics, "
        f"{shape.kms_keys} KMS keys, Express log level {shape.express_log_level}"
    )
    mixes = [("default", cost.DEFAULT_MIX), ("labs-heavy", cost.LABS_HEAVY_MIX)]
    if args.mix:
        mixes = [("given", args.mix)]
    rates = [0.0, 1_000.0, 10_000.0]
    if args.messages_per_day is not None:
        rates = [0.0, args.messages_per_day]
    for label, mix in mixes:
        shares = ", ".join(f"{name} {share:g}" for name, share in mix.items())
        costs = [cost.monthly_cost(shape, rate, mix) for rate in rates]
        title = f"monthly cost, us-east-1 list prices, {label} mix ({shares}):"
        print("\n".join(cost.format_cost(costs, title)))
    return 0


def _mix(text: str) -> dict[str, float]:
    from tasks.cost import parse_mix

    try:
        mix = parse_mix(text)
        if any(share < 0 for share in mix.values()):
            raise ValueError("a share below 0")
        return mix
    except (ValueError, ZeroDivisionError) as error:
        raise argparse.ArgumentTypeError(
            f"{error} (labs,vitals,nutrition,nothing shares such as 2,60,30,8)"
        ) from None


def add_commands(sub: argparse._SubParsersAction) -> None:
    def targeted(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--target", choices=["local", "aws"],
            help="the local cloud or the deployed stack (default: HEALTHFLOW_TARGET, else local)",
        )  # fmt: skip
        parser.add_argument(
            "--env",
            help="with --target aws: the deployed environment whose addresses SSM holds "
            "(/healthflow/ENV/...); default HEALTHFLOW_ENV",
        )
        return parser

    run = sub.add_parser("run", help="the main job on the local cloud")
    run.add_argument("--demo", action="store_true", help="ingest a synthetic dataset first")
    run.set_defaults(handler=cmd_run)

    for name, handler, help_text in (
        ("send", cmd_send, "send a trigger message (nothing is sent while the switch is off)"),
        (
            "start-execution",
            cmd_start_execution,
            "reprocess a user and domain: all of its rows, or those of --from/--to",
        ),
    ):
        command = targeted(sub.add_parser(name, help=help_text, description=help_text))
        command.add_argument(
            "--domain", choices=list(DOMAINS_IN_ORDER), required=True, help="the branch to run"
        )
        command.add_argument(
            "--user-id", type=cli_args.user_id, required=True, help="the user whose rows to take"
        )
        command.add_argument(
            "--priority", choices=["normal", "high"], default="normal",
            help="the trigger's priority (default normal)",
        )  # fmt: skip
        command.set_defaults(handler=handler)
        if name == "start-execution":
            command.add_argument(
                "--from", dest="date_from", type=cli_args.iso_date,
                help="first local day YYYY-MM-DD (default: the user's first row)",
            )  # fmt: skip
            command.add_argument(
                "--to", dest="date_to", type=cli_args.iso_date,
                help="last local day YYYY-MM-DD (default: the user's last row)",
            )  # fmt: skip
            command.add_argument("--name", help="execution name (default: generated)")

    trace = targeted(
        sub.add_parser("trace", help="state-by-state timeline of an execution and its labs child")
    )
    trace.add_argument(
        "execution",
        help="execution name (local) or ARN (aws: a labs execution; Express executions are "
        "read in the console from their CloudWatch log, see README)",
    )
    trace.set_defaults(handler=cmd_trace)

    dlq = targeted(sub.add_parser("dlq", help="dead-letter queue: list, redrive, purge"))
    dlq.add_argument(
        "action", choices=["list", "redrive", "purge"],
        help="list them; redrive re-sends their triggers; purge deletes them (by default only "
        "those that can never be redriven: no valid trigger)",
    )  # fmt: skip
    dlq.add_argument(
        "--all", action="store_true", help="purge: every dead letter the filters select"
    )
    dlq.add_argument("--error", help="purge: only dead letters with this error name")
    dlq.add_argument(
        "--user-id", type=cli_args.user_id, help="purge: only this user's (implies --all)"
    )
    dlq.add_argument("--yes", action="store_true", help="purge without asking (for scripts)")
    dlq.set_defaults(handler=cmd_dlq)

    graph = sub.add_parser("graph", help="the two state machines as a Mermaid diagram")
    graph.add_argument("--output", help="write the diagram to this file (default: stdout)")
    graph.set_defaults(handler=cmd_graph)

    cost = sub.add_parser(
        "cost", help="monthly cost of the synthesized stack at us-east-1 list prices"
    )
    cost.add_argument(
        "--messages-per-day", type=cli_args.non_negative_float,
        help="default: idle, 1,000 and 10,000 a day",
    )  # fmt: skip
    cost.add_argument(
        "--mix", type=_mix,
        help="shares of labs,vitals,nutrition,nothing (e.g. 2,60,30,8); default: the default "
        "mix 2/60/30/8 and the labs-heavy 10/50/30/10",
    )  # fmt: skip
    cost.add_argument(
        "--template",
        help="a synthesized template (default: synthesize one, which needs Node.js)",
    )
    cost.set_defaults(handler=cmd_cost)

    from tasks import console  # `healthflow console`: the web page for what these commands show

    console.add_command(sub)


__all__ = ["add_commands"]
