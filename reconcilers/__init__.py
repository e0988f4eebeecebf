"""Resource types: one module per type, each a plugin of the engine's resource API."""
