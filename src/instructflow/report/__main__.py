"""`python -m instructflow.report`: the report stage."""

from . import main

main()
