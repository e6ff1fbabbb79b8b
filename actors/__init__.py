"""Conversation shards and their logic; plain classes under thin Ray shells."""
