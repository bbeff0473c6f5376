"""`python -m instructflow.evaluate` runs the evaluate stage (see __init__.py)."""

from . import main

main()
