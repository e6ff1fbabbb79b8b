"""The composition root: settings, wiring, Ray start-up, the Serve application, the CLI."""
