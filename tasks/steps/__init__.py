"""Workflow steps: one function per step, each with a pydantic input and output model, registered
by name. The same function runs as a Lambda handler, an ECS container step, in the local cloud and
in direct mode (`healthflow process`). See CONTRACT.md for names and I/O."""
