"""Test support: tiny offline models, for the tests, the benchmarks' smoke runs and the container check."""
