"""Analyses of models and runs: complexity (params, MACs), and more to come."""
