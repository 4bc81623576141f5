"""The platform's Ray actors (docs/architecture.md "The actors"): agents, workflow runs, approvals, the task
router, the event hub and the reconciler. They arrive with the issues that need them, starting with the
agent actor; policy stays in `schedulers/` and durable state in `persistence/`."""
