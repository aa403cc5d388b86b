"""The web console: static assets served by `propylon serve` at `/` (no build step)."""
