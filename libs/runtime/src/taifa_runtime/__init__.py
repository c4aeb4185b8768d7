"""Process plumbing shared by the services (not domain code: that lives in each service and libs/events)."""
