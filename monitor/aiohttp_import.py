"""Imports aiohttp without the two SSL contexts it makes at import.

aiohttp's connector module builds two default SSL contexts when it is imported
(`aiohttp.connector._SSL_CONTEXT_VERIFIED` and `_UNVERIFIED`, on purpose: aio-libs/aiohttp
#9029, so that no event loop blocks on them later), and each loads the system's CA bundle:
about 60 ms of every `monitor once` and daemon start on this project's machine, measured in
bench/README.md (`monitor once` and start-up). The fetcher never uses either: every session it
makes has a context of its own (`monitor.fetch._verified_context`). So OpenSSL's default CA file
and folder (the `SSL_CERT_FILE` and `SSL_CERT_DIR` variables it reads each time a context loads
its defaults) name an empty file while aiohttp is imported, then are put back as they were. A
request that ever fell back on aiohttp's own contexts would find no CA and fail its certificate
check: the change can only refuse, never trust.

Imported first by `monitor.fetch`; in a process that imported aiohttp already it does nothing.
The variables are changed for the length of aiohttp's import only, in the importing thread;
`once` and `run` import the fetcher at start, before they start any thread.
"""

from __future__ import annotations

import os
import sys

_VARS = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def import_aiohttp() -> None:
    """Import aiohttp with OpenSSL's default CA locations pointing at nothing."""
    if "aiohttp" in sys.modules:
        return
    saved = {name: os.environ.get(name) for name in _VARS}
    os.environ.update(dict.fromkeys(_VARS, os.devnull))
    try:
        import aiohttp  # noqa: F401
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


import_aiohttp()
