"""Running the product locally: the processes it is made of and the supervisor that keeps them up.

`stack.processes` is the one place that knows how to start and stop restate-server, the worker
and their helpers; `python -m stack run` (stack.supervisor) is the product's run command.
"""
