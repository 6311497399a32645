"""The console's HTTP routes, one APIRouter per area; `services.console.app.create_app` composes them.

A new area: a module here with `router = APIRouter(prefix="/api/v1", tags=[...])`, handlers that take
`user: Authed` (the logged-in user, CSRF-checked on changes) and `ctx: Ctx` (the service's parts, see
context.py), refusals through `ctx.deny(...)` so they reach the audit ledger, and one line in app.ROUTERS.
"""
