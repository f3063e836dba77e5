"""The run: config (each setting once), the builder, the CLI, the runner, the run directory,
checkpoints and progress. The host side of a sweep."""
