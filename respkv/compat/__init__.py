"""Drop-in surfaces of other systems' clients, built on respkv's connectors."""
