"""The autonomous monitor: polls the terminal, applies rules, executes command files."""
