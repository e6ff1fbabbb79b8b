"""Ports (small Protocols) and their production and embedded adapters."""
