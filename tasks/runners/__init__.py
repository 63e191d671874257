"""Entry points that run steps: the Lambda handler and the ECS (ml-worker) container runner."""
