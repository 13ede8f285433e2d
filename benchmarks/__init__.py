"""Benchmarks: training throughput (benchmarks.train) and endpoint latency (benchmarks.serve)."""
