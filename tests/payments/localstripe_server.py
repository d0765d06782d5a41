"""Run localstripe on 127.0.0.1:PORT, keeping its state in memory (not its /tmp pickle file,
which concurrent runs would share): ``python -m tests.payments.localstripe_server PORT``."""

from __future__ import annotations

import sys

from aiohttp import web
from localstripe import server
from localstripe.resources import store

if __name__ == "__main__":
    store.dump_to_disk = lambda: None  # type: ignore[method-assign]
    web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
