"""Docker HEALTHCHECK probe: exit 0 when this container's server is ready (/readyz), 1 otherwise.

Written in Python because the slim and debootstrap bases have no curl or wget; it imports nothing heavy,
so one probe costs a Python start-up (tens of milliseconds), not a model load.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8080')}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"not ready: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
