"""Training: value targets, the bootstrap of pi_0 and V_0, and (later) self-training."""
