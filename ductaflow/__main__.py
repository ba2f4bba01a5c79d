"""``python -m ductaflow`` runs the command-line interface."""

from ductaflow.cli import entry

if __name__ == "__main__":
    entry()
