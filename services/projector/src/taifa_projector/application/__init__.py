"""Use cases: apply a batch, rebuild, check and rebuild the cache, on the ports of `ports.py`."""
