from rest_framework import status

from common.problems import DomainError
from common.signing import MessageRefused


class OrderNotFound(DomainError):
    code = "order_not_found"
    status = status.HTTP_404_NOT_FOUND
    title = "No such order."


class ConcurrencyConflict(DomainError):
    code = "concurrency_conflict"
    status = status.HTTP_409_CONFLICT
    title = "The order changed meanwhile; try again."


class OrderStateConflict(DomainError):
    code = "order_state_conflict"
    status = status.HTTP_409_CONFLICT
    title = "The order is not in a state that allows this."


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    status = status.HTTP_422_UNPROCESSABLE_ENTITY
    title = "This Idempotency-Key was used for a different request."


class ReplyInconsistent(MessageRefused):
    """A saga reply that claims something other than what its step asked; dead-lettered."""
