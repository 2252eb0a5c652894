from common.testing.tokens import *  # noqa: F403
