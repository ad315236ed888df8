"""ledgerflow's composition root: the HTTP server and the command line.

    api/http/   the FastAPI app (`create_app`), its routers, middleware, live feeds and the
                background services one server process runs; only the server imports it.
    api/cli/    the `ledgerflow` command and its sub-commands (`python -m ledgerflow.api`);
                only the command line imports it (`server start` reaches into http/ to serve).
    api/keys.py API-key storage (create, list, revoke, authenticate). The server checks keys
                on every request and the CLI manages them (`ledgerflow api-key ...`), so it
                belongs to neither side; it is one module with no HTTP or terminal in it, so
                it stays here rather than in a sub-package of its own.

`api` may import every other package of ours; nothing imports `api`.
"""
