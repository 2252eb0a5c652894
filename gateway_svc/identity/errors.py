from rest_framework import status

from common.problems import DomainError


class InvalidRefreshToken(DomainError):
    code = "invalid_refresh_token"
    status = status.HTTP_401_UNAUTHORIZED
    title = "The refresh token is not valid."


class AccountInactive(DomainError):
    code = "account_inactive"
    status = status.HTTP_401_UNAUTHORIZED
    title = "The account is no longer active."
