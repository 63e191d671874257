"""`HealthflowStack`: wires the per-concern constructs together; no resources of its own."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from healthflow_infra.config import HealthflowConfig
from healthflow_infra.constructs.database import Database, DatabaseMigrations
from healthflow_infra.constructs.functions import StepFunctions, database_environment
from healthflow_infra.constructs.ml_worker import MlWorker
from healthflow_infra.constructs.monitoring import Monitoring
from healthflow_infra.constructs.network import Network
from healthflow_infra.constructs.parameters import RuntimeParameters
from healthflow_infra.constructs.pipe import TriggerPipe
from healthflow_infra.constructs.queue import TriggerQueue
from healthflow_infra.constructs.sweep import ClaimSweep
from healthflow_infra.constructs.workflow import Workflow

_RETENTION_BY_DAYS: dict[int, logs.RetentionDays] = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def _retention(days: int) -> logs.RetentionDays:
    try:
        return _RETENTION_BY_DAYS[days]
    except KeyError as error:
        allowed = ", ".join(str(d) for d in _RETENTION_BY_DAYS)
        raise ValueError(f"healthflow:logRetentionDays must be one of {allowed}") from error


class HealthflowStack(Stack):
    """The whole deployment: queue -> pipe -> Express machine (-> Standard labs machine)
    -> Lambda / ECS -> PostgreSQL."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: HealthflowConfig,
        **stack_kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **stack_kwargs)
        self.config = config
        retention = _retention(config.log_retention_days)

        self.trigger_queue = TriggerQueue(
            self, "TriggerQueue", env_name=config.env_name, customer_managed_key=config.queue_cmk
        )
        self.network = Network(
            self,
            "Network",
            layout=config.network,
            vpc_id=config.vpc_id,
            availability_zones=config.availability_zones,
            lambda_subnet_ids=config.lambda_subnet_ids,
            ml_worker_subnet_ids=config.ml_worker_subnet_ids,
            ml_worker_public_ip=config.ml_worker_public_ip,
        )
        self.database = Database(
            self,
            "Database",
            env_name=config.env_name,
            vpc=self.network.vpc,
            subnets=self.network.database_subnets,
            min_capacity_acu=config.db_min_capacity_acu,
            max_capacity_acu=config.db_max_capacity_acu,
            auto_pause=Duration.minutes(config.db_auto_pause_minutes),
            deletion_protection=config.db_deletion_protection,
            log_retention=retention,
            host=config.db_host,
            port=config.db_port,
            name=config.db_name,
            user=config.db_user,
            resource_id=config.db_resource_id,
            security_group_id=config.db_security_group_id,
        )
        db_environment = {
            **database_environment(
                host=self.database.host,
                port=self.database.port,
                name=self.database.name,
                user=self.database.user,
            ),
            # Off by default: custom metrics bill by the hour (see HealthflowConfig.metrics).
            "HEALTHFLOW_METRICS": "true" if config.metrics else "false",
        }
        self.steps = StepFunctions(
            self,
            "Steps",
            env_name=config.env_name,
            vpc=self.network.vpc,
            subnets=self.network.lambda_subnets,
            database_environment=db_environment,
            memory_size_mb=config.steps_function_memory_mb,
            timeout=Duration.seconds(config.steps_function_timeout_seconds),
            reserved_concurrency=config.steps_function_reserved_concurrency,
            log_retention=retention,
            install_dependencies=not config.skip_bundling,
            tracing=config.tracing,
        )
        self.ml_worker = MlWorker(
            self,
            "MlWorker",
            env_name=config.env_name,
            vpc=self.network.vpc,
            database_environment=db_environment,
            cpu=config.ml_worker_cpu,
            memory_limit_mib=config.ml_worker_memory_mib,
            log_retention=retention,
        )
        # IAM database authentication: the only permission either needs at run time.
        self.database.grant_connect(self.steps.function)
        self.database.grant_connect(self.ml_worker.task_role)
        self.database.allow_from(self.steps.security_group, description="steps Lambda")
        self.database.allow_from(self.ml_worker.security_group, description="ml-worker tasks")
        self.network.allow_endpoint_access_from(
            self.ml_worker.security_group, description="ml-worker tasks"
        )

        self.workflow = Workflow(
            self,
            "Workflow",
            env_name=config.env_name,
            asl_path=config.asl_path,
            labs_asl_path=config.labs_asl_path,
            # The alias, never the function: see StepFunctions (no deploy window).
            steps_function=self.steps.live,
            cluster=self.ml_worker.cluster,
            task_definition=self.ml_worker.task_definition,
            container_name=self.ml_worker.container_name,
            task_subnet_ids=[subnet.subnet_id for subnet in self.network.ml_worker_subnets],
            task_security_group_id=self.ml_worker.security_group.security_group_id,
            task_public_ip=self.network.ml_worker_public_ip,
            dead_letter_queue=self.trigger_queue.dead_letter_queue,
            trigger_queue=self.trigger_queue.queue,
            queue_key=self.trigger_queue.key,
            log_retention=retention,
            tracing=config.tracing,
        )
        self.sweep = ClaimSweep(
            self,
            "ClaimSweep",
            env_name=config.env_name,
            asl_path=config.sweep_asl_path,
            steps_function=self.steps.live,
            trigger_queue=self.trigger_queue.queue,
            queue_key=self.trigger_queue.key,
            interval=Duration.hours(config.effective_sweep_interval_hours),
            log_retention=retention,
            tracing=config.tracing,
        )
        self.pipe = TriggerPipe(
            self,
            "TriggerPipe",
            env_name=config.env_name,
            queue=self.trigger_queue.queue,
            queue_key=self.trigger_queue.key,
            state_machine=self.workflow.state_machine,
            enabled=config.enabled,
            log_retention=retention,
        )
        self.parameters = RuntimeParameters(
            self,
            "Parameters",
            parameter_prefix=config.parameter_prefix,
            queue_url=self.trigger_queue.queue.queue_url,
            enabled=config.enabled,
            addresses={
                "state-machine-arn": (
                    self.workflow.state_machine.state_machine_arn,
                    "ARN of the state machine a message starts (start-execution, trace)",
                ),
                "labs-state-machine-arn": (
                    self.workflow.labs_state_machine.state_machine_arn,
                    "ARN of the Standard labs state machine (trace of a labs execution)",
                ),
                "dead-letter-queue-url": (
                    self.trigger_queue.dead_letter_queue.queue_url,
                    "URL of the dead-letter queue (healthflow dlq list|redrive)",
                ),
            },
        )
        self.migrations: DatabaseMigrations | None = None
        if config.run_migrations_on_deploy:
            self.migrations = DatabaseMigrations(
                self,
                "Migrations",
                steps_function=self.steps.function,
                database=self.database,
                log_retention=retention,
            )
            # The alias moves to the new version only once the migrations shipped with it ran;
            # a failed migration rolls the stack back with the old version still serving.
            self.steps.live.node.add_dependency(self.migrations.resource)
        if config.oldest_message_age_alarm_seconds <= self.trigger_queue.seconds_until_dead_letter:
            raise ValueError(
                "healthflow:oldestMessageAgeAlarmSeconds must exceed "
                f"{self.trigger_queue.seconds_until_dead_letter} s (maxReceiveCount x visibility "
                "timeout), or a failed pipe start would page twice: as an old trigger and as a "
                "dead letter"
            )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            env_name=config.env_name,
            queue=self.trigger_queue.queue,
            dead_letter_queue=self.trigger_queue.dead_letter_queue,
            machines={
                "Express": (self.workflow.state_machine, sfn.StateMachineType.EXPRESS),
                "Labs": (self.workflow.labs_state_machine, sfn.StateMachineType.STANDARD),
                "Sweep": (self.sweep.state_machine, sfn.StateMachineType.EXPRESS),
            },
            steps_function=self.steps.function,
            oldest_message_age_threshold=Duration.seconds(config.oldest_message_age_alarm_seconds),
            topic_key=config.alarm_topic_key,
            alarm_email=config.alarm_email,
            dashboard=config.dashboard,
        )
        # What an operator or `healthflow ... --target aws` needs (see cdk/README.md).
        outputs = {
            "TriggerQueueUrl": self.trigger_queue.queue.queue_url,
            "DeadLetterQueueUrl": self.trigger_queue.dead_letter_queue.queue_url,
            "StateMachineArn": self.workflow.state_machine.state_machine_arn,
            "LabsStateMachineArn": self.workflow.labs_state_machine.state_machine_arn,
            "DatabaseHost": self.database.host,
            "AlarmTopicArn": self.monitoring.topic.topic_arn,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
