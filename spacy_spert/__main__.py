"""``python -m spacy_spert COMMAND ...``: see :mod:`spacy_spert.cli`."""

from .cli import main

if __name__ == "__main__":
    main()
