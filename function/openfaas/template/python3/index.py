"""The classic python3 template's entry point (openfaas/templates, template/python3/index.py, retired in 2025): the
classic watchdog runs `python3 index.py` once per request, writes the request body to its stdin and sends back what
it prints. So everything the function imports, the model included, is loaded again for every request.

Written for this kit from what the upstream file does, with one change: the body is read as bytes. The template
reads stdin as text, which makes a JPEG body fail to decode (exit 1, a 500) before the handler runs; every other
platform of the kit receives the same raw JPEG, so this one must too (../../README.md).
"""

from __future__ import annotations

import sys

from function import handler  # the user's folder, copied in beside this file as `function/` (faas-cli build)


def main() -> None:
    body = sys.stdin.buffer.read()
    returned = handler.handle(body)
    if returned is not None:
        print(returned)


if __name__ == "__main__":
    main()
