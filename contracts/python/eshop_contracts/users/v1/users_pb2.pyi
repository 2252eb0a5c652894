from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CheckCredentialsRequest(_message.Message):
    __slots__ = ("email", "password")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class CheckCredentialsResponse(_message.Message):
    __slots__ = ("valid", "claims")
    VALID_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    claims: Claims
    def __init__(self, valid: _Optional[bool] = ..., claims: _Optional[_Union[Claims, _Mapping]] = ...) -> None: ...

class Claims(_message.Message):
    __slots__ = ("sub", "email", "name", "is_staff", "roles")
    SUB_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IS_STAFF_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    sub: str
    email: str
    name: str
    is_staff: bool
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sub: _Optional[str] = ..., email: _Optional[str] = ..., name: _Optional[str] = ..., is_staff: _Optional[bool] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class GetCustomerSummaryRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class CustomerSummary(_message.Message):
    __slots__ = ("id", "email", "name", "credit_limit", "credit_available", "date_joined", "is_active", "is_staff", "order_count", "roles")
    ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREDIT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CREDIT_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    DATE_JOINED_FIELD_NUMBER: _ClassVar[int]
    IS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    IS_STAFF_FIELD_NUMBER: _ClassVar[int]
    ORDER_COUNT_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    id: int
    email: str
    name: str
    credit_limit: str
    credit_available: str
    date_joined: str
    is_active: bool
    is_staff: bool
    order_count: int
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[int] = ..., email: _Optional[str] = ..., name: _Optional[str] = ..., credit_limit: _Optional[str] = ..., credit_available: _Optional[str] = ..., date_joined: _Optional[str] = ..., is_active: _Optional[bool] = ..., is_staff: _Optional[bool] = ..., order_count: _Optional[int] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...
