"""agents: policies and PRMs, search agents, self-training, integrations and the CLI."""
