"""The agent's brain: prompting, parsing and the step's policies, apart from the Restate services.

Nothing here imports `restate` or a service module: the step loop (app/loop.py) asks these
objects what to do and does it durably. They are tested in-process, in milliseconds
(tests/test_brain.py).
"""
