"""``python -m research COMMAND ...``: see :mod:`research.cli`."""

from .cli import main

if __name__ == "__main__":
    main()
