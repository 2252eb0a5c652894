from common.testing.tokens import *  # noqa: F403
from common.testing.tracing import spans  # noqa: F401 - in-memory spans of the session's provider
