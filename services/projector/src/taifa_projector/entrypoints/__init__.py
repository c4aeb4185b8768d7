"""Process entry points: the consume loop (`taifa-projector run`) and the operator CLI."""
