"""The benchmark harness: jupyter_faas against its peers, one command (see README, Benchmarks)."""
