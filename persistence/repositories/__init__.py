"""Query functions per table: no business rules, just SQL that each service composes."""
