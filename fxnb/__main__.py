"""``python -m fxnb`` runs the CLI."""

from fxnb.cli import main

if __name__ == "__main__":
    main()
