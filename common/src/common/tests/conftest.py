from common.testing.signing import signing_keys  # noqa: F401 - the session's message signing keys
from common.testing.tokens import *  # noqa: F403
from common.testing.tracing import spans  # noqa: F401 - in-memory spans of the session's provider
