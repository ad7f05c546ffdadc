"""The web console at /console on the Invoke API's address (console.py).

Its templates and static files are package data (pyproject.toml)."""
