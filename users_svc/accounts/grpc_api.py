"""users.v1 over gRPC (contracts/proto/users/v1/users.proto): thin, like apis.py.

Served by ``manage.py grpc_serve`` (common.grpc_server), which has checked the
caller's service token and handles the database connections around each call.
"""

from __future__ import annotations

import grpc
from eshop_contracts.users.v1 import users_pb2, users_pb2_grpc

from accounts.errors import CustomerNotFound, InvalidCredentials
from accounts.selectors import user_claims, user_get
from accounts.serializers import CredentialsSerializer, CustomerSummarySerializer
from accounts.services import credentials_verify


class UsersServicer(users_pb2_grpc.UsersServiceServicer):
    def CheckCredentials(
        self, request: users_pb2.CheckCredentialsRequest, context: grpc.ServicerContext
    ) -> users_pb2.CheckCredentialsResponse:
        # The REST endpoint's limits (254 and 4096 characters), before any hashing.
        credentials = CredentialsSerializer(
            data={"email": request.email, "password": request.password}
        )
        if not credentials.is_valid():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "An email and a password are needed.")
        try:
            user = credentials_verify(**credentials.validated_data)
        except InvalidCredentials:
            return users_pb2.CheckCredentialsResponse(valid=False)
        claims = users_pb2.Claims(**user_claims(user=user))
        return users_pb2.CheckCredentialsResponse(valid=True, claims=claims)

    def GetCustomerSummary(
        self, request: users_pb2.GetCustomerSummaryRequest, context: grpc.ServicerContext
    ) -> users_pb2.CustomerSummary:
        try:
            user = user_get(user_id=request.user_id)
        except CustomerNotFound as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error))
        # The serializer the REST API used: amounts and dates written as it wrote them.
        summary = CustomerSummarySerializer(user).data
        return users_pb2.CustomerSummary(
            **{name: value for name, value in summary.items() if value is not None}
        )


def register(server: grpc.Server) -> list[str]:
    """Add the users.v1 servicer to ``server`` (settings.GRPC_SERVICERS); its service names."""
    users_pb2_grpc.add_UsersServiceServicer_to_server(UsersServicer(), server)
    return [users_pb2.DESCRIPTOR.services_by_name["UsersService"].full_name]
