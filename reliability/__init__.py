"""Long-running reliability commands: ``python -m reliability.fuzz`` and ``python -m reliability.soak``.

Both start their own deepshiva-server on a free loopback port (or use ``--url``), send traffic only
to 127.0.0.1, stop by themselves, and write their figures to ``reliability/results/*.json``.
"""
