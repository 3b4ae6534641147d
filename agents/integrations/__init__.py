"""Bridges from the library to tools outside it: browsers (`tree_view`), stable-baselines3 (`sb3_env`),
Weights & Biases (`wandb_logging`)."""
