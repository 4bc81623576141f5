"""Cross-cutting building blocks shared by every layer: settings, domain errors, ids and clocks."""
