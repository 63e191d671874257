"""The healthflow CDK app: one stack (`HealthflowStack`), one construct per concern."""

from healthflow_infra.config import HealthflowConfig
from healthflow_infra.stack import HealthflowStack

__all__ = ["HealthflowConfig", "HealthflowStack"]
