"""The load-test harness and the Meta simulator (webhook traffic and the Graph API)."""
