"""Pure rules of the relay: reply constants and the submission policy (no I/O)."""
