"""The ``gcrl`` command line; :func:`gcrl.cli.main.main` is its testable entry point."""
