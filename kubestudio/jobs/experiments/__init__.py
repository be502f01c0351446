"""Experiments: hyperparameter searches whose trials are jobs (Optuna inside)."""
