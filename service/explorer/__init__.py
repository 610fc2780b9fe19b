"""The explorer: a web page on the running service (what Captum Insights was), served by a thin
Starlette app that talks to the service through its public API only.

``python -m service.explorer --listen 127.0.0.1:8090 --inference-url http://127.0.0.1:8080
--gateway 127.0.0.1:50051``; the page asks for the inference key once and sends it with every
call; the server forwards the caller's ``Authorization`` header upstream and serves nothing
(spec, examples, explanations) to a caller whose key the service refuses.
"""

from .app import create_app
from .config import ExplorerConfig

__all__ = ["ExplorerConfig", "create_app"]
