from common.testing.service_contract import *  # noqa: F403
