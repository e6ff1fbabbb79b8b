"""Pure data: Meta's webhook contract, the normalized event, tenant config. No I/O."""
