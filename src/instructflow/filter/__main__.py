"""`python -m instructflow.filter`: run the filter stage."""

from . import main

main()
