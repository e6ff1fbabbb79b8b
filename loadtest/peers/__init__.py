"""Reference peers the bench compares the service with (started with uvicorn by the bench)."""
