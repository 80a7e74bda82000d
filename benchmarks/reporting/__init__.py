"""The side-by-side report behind ``benchmarks/RESULTS.md``; ``benchmarks/report.py`` is its command line.

One idea per module: ``core`` (paths, datasets, ``Context``, ``Row``), ``store`` (fingerprints, versions,
machine, row JSON, computing a row), ``quality`` (the quality row kinds), ``perf`` (speed, memory and storage
rows), ``render`` (RESULTS.md and plots), ``registry`` (``ROWS``), ``cli`` (the driver).

Imported as the top-level package ``reporting``: a script run as ``python benchmarks/report.py`` has
``benchmarks/`` first on ``sys.path`` (tests load the scripts the same way, ``tests/conftest.py``).
"""
