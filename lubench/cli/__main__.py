"""``python -m lubench.cli ...``: the ``lubench`` command."""

import os

from lubench.cli.main import main

if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
