"""``python -m ductaflow`` runs the command-line interface."""

from ductaflow.cli import main

if __name__ == "__main__":
    main()
