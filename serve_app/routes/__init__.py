"""One module per resource; each exposes `router` (and `public` for its public routes)."""
