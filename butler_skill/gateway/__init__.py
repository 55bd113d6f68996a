"""The gateway: `butler serve` puts Butler in the path of an agent's own model calls (see app.py)."""
