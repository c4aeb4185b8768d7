"""Use cases: apply a batch, rebuild, check and rebuild the cache; adapters are passed in."""
