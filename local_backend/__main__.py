"""``python -m local_backend serve --config models.yaml --host 127.0.0.1 --port 8100``."""

import sys

from local_backend.cli import main

sys.exit(main())
