"""The console's HTTP routes, one APIRouter per area; `services.console.app.create_app` composes them."""
