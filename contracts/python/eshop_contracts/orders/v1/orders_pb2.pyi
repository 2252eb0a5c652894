from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListUnfinishedSagasRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListUnfinishedSagasResponse(_message.Message):
    __slots__ = ("limit", "sagas")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SAGAS_FIELD_NUMBER: _ClassVar[int]
    limit: int
    sagas: _containers.RepeatedCompositeFieldContainer[Saga]
    def __init__(self, limit: _Optional[int] = ..., sagas: _Optional[_Iterable[_Union[Saga, _Mapping]]] = ...) -> None: ...

class Saga(_message.Message):
    __slots__ = ("order_id", "kind", "state", "waiting", "attempts", "outcome", "needs_attention", "last_error", "started_at", "updated_at", "deadline")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    NEEDS_ATTENTION_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    kind: str
    state: str
    waiting: _containers.RepeatedScalarFieldContainer[str]
    attempts: int
    outcome: str
    needs_attention: bool
    last_error: str
    started_at: str
    updated_at: str
    deadline: str
    def __init__(self, order_id: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[str] = ..., waiting: _Optional[_Iterable[str]] = ..., attempts: _Optional[int] = ..., outcome: _Optional[str] = ..., needs_attention: _Optional[bool] = ..., last_error: _Optional[str] = ..., started_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., deadline: _Optional[str] = ...) -> None: ...
