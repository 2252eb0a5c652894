"""What the users service's business rules refuse, each with a stable code."""

from rest_framework import status

from common.problems import DomainError


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    status = status.HTTP_401_UNAUTHORIZED
    title = "Email or password is wrong."


class CustomerNotFound(DomainError):
    code = "customer_not_found"
    status = status.HTTP_404_NOT_FOUND
    title = "No such customer."


class EmailTaken(DomainError):
    code = "validation_error"
    status = status.HTTP_400_BAD_REQUEST
    title = "The request is not valid."


class InvalidCreditLimit(DomainError):
    code = "validation_error"
    status = status.HTTP_400_BAD_REQUEST
    title = "The request is not valid."


class InvalidCreditRequest(DomainError):
    code = "invalid_credit_request"
    status = status.HTTP_400_BAD_REQUEST
    title = "The credit request is not valid."
