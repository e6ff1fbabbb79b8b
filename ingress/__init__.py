"""The HTTP edge: checks, verify, parse once, durable hand-off, 200."""
