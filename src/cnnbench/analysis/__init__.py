"""Analyses of trained runs and of models: profiling, statistics, robustness, insight."""
