"""The web console and JSON API, served by the daemon itself.

Starlette on uvicorn, rather than FastAPI, Flask or aiohttp.web: Starlette is the small ASGI
toolkit FastAPI is built on (routing, sessions, static files, a test client, streaming for
server-sent events) without FastAPI's pydantic request models, which our plain JSON bodies
do not need; uvicorn runs it as a task of the daemon's own asyncio loop (`Server.serve()`), so
pages read the same store, settings and metrics as the pipeline, with no thread or second
process. Flask is WSGI (a thread pool beside the loop); aiohttp.web would have been a third
HTTP stack. Pages are Jinja2 templates (autoescaped), readable without JavaScript; one small
script adds the live timeline. No Node build.

- `app.create_app(console)`: the ASGI app (health endpoints, login, `/api/v1`, pages).
- `server.start_web(daemon)`: binds `web.listen` and serves it in the daemon's loop.
- `auth`: users, scrypt password hashes, tokens, roles, CSRF.
- `api`: the JSON API and its OpenAPI document; `pages`: the HTML pages and `/events`.
"""
