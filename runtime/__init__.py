"""The workflow runtime: graph validation, the safe expression and template languages, node types, and
the step loop that checkpoints after every step. Pure Python; the Ray actors in `actors/` host it."""
