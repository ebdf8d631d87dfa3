"""Restate services of the durable coding agent: Agent, Task and Sandbox."""
