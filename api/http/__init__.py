"""The HTTP server: `app.create_app(settings, api)` builds it.

    app.py          the composition root: middleware, routers, docs, and the lifespan that
                    opens the `ServerState` and runs the background services
    services.py     what runs in the background (`services(state, api)`), each a `Service`
    state.py        what requests need while the process runs (store, read model, keys, ...)
    settings.py     the server's own settings (bind address, auth, allowed hosts and origins)
    security.py     Host allow-list, origin check and JSON-only writes (CSRF, DNS rebinding)
    middleware.py   body size limit and request timing
    docs.py         Swagger UI and ReDoc served from a package, never from a CDN
    deps.py         `Annotated` dependency aliases and the API-key check
    errors.py       domain errors to HTTP status codes, in one place
    routers/        the endpoints: events (ingest, reads, SSE/WebSocket), runs, system, and the
                    dashboard's pages (dashboard.py)
    templating.py   the dashboard's Jinja2 templates (templates/), assets (static/, mounted at
                    /static) and the headers its pages are sent with
    feed.py, event_query.py, contract.py, schemas.py, responses.py, openapi.py, metrics.py
                    what those endpoints stand on
"""
