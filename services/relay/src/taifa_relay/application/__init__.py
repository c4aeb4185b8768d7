"""What the relay decides: AUTH, sender and message checks, sessions and revocations; adapters are passed in."""
