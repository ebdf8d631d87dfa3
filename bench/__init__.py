"""Benchmarks: what the durable loop and the local sandbox cost, measured side by side.

    python -m bench            # everything, as markdown tables (make bench)
    python -m bench spine      # one part: spine | sandbox

Performance numbers live here, never as timing assertions in tests. See bench/README.md.
"""
