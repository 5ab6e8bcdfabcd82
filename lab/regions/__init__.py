"""Demo region apps: one small app per region serving the seeds' endpoints."""
