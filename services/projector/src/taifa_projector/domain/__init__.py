"""Pure projection rules: how each event changes a read-model row or an auth-cache entry. No I/O."""
