"""Lifeboat benchmarks: each prints name=value figures measured in the same run."""
