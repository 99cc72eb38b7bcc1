"""``python -m gcrl``: the ``gcrl`` command (Lightning's DDP launcher re-runs it per rank)."""

from gcrl.cli.main import run

if __name__ == "__main__":
    run()
