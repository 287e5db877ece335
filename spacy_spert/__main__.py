"""``python -m spacy_spert COMMAND ...``: see :mod:`spacy_spert.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
