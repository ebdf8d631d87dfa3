"""The test suite. A package, so that tests, the harness and the fakes import as `tests.*`."""
