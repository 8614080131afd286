"""The HTTP door: `create_app(queue)` builds the FastAPI app `agentqueue serve` runs."""

from agentqueue.api.app import create_app
from agentqueue.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
