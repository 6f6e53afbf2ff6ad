"""Benchmarks, run on demand by `make bench` (not collected by pytest: no test_ files)."""
