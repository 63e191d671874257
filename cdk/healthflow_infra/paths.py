"""Filesystem locations the app reads at synth time (all relative to the repository root)."""

from pathlib import Path

from tasks.statemachines import EXPRESS_ASL, LABS_ASL, SWEEP_ASL

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ASL_PATH = EXPRESS_ASL  # the Express parent
DEFAULT_LABS_ASL_PATH = LABS_ASL  # the Standard labs child
DEFAULT_SWEEP_ASL_PATH = SWEEP_ASL  # the scheduled claim sweep
TASKS_PACKAGE_DIR = REPO_ROOT / "tasks"
REQUIREMENTS_LOCK = REPO_ROOT / "requirements.lock"
ML_WORKER_DOCKERFILE = "containers/ml-worker/Dockerfile"  # relative to REPO_ROOT (the context)
