"""Meta's WhatsApp webhook contract, typed: messages, statuses, errors and every field."""
