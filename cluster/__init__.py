"""Running the platform on Ray: starting/joining a cluster, Serve deployment, probes and the CLI."""
