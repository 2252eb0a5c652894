"""users.v1 over gRPC, through the server `manage.py grpc_serve` runs (in-process, loopback).

These replace the tests of the REST ``/internal/`` endpoints that gRPC replaced.
"""

from __future__ import annotations

import grpc
import pytest
from eshop_contracts.users.v1 import users_pb2, users_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from accounts.tests.factories import UserFactory
from common.contracts import contract_verify, contracts_of, rpc_message_dict
from common.grpc_server import ready_now

# The server's threads read the database: the rows must be committed for them to see.
pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery"


@pytest.fixture
def users(grpc_serve):
    return users_pb2_grpc.UsersServiceStub(grpc_serve())


@pytest.fixture
def service_metadata(make_token):
    token = make_token(sub="service:gateway", scope="internal", roles=["service"])
    return (("authorization", f"Bearer {token}"),)


def test_check_credentials_answers_the_claims_of_the_user(users, service_metadata):
    user = UserFactory(email="ann@example.com", name="Ann")

    response = users.CheckCredentials(
        users_pb2.CheckCredentialsRequest(email="Ann@example.com", password=PASSWORD),
        metadata=service_metadata,
        timeout=10,
    )

    assert response.valid
    assert (response.claims.sub, response.claims.email, response.claims.name) == (
        str(user.pk),
        "ann@example.com",
        "Ann",
    )
    assert (response.claims.is_staff, list(response.claims.roles)) == (False, ["customer"])


def test_a_wrong_password_is_an_answer_not_an_error(users, service_metadata):
    UserFactory(email="ann@example.com")

    response = users.CheckCredentials(
        users_pb2.CheckCredentialsRequest(email="ann@example.com", password="nope"),
        metadata=service_metadata,
        timeout=10,
    )

    assert not response.valid
    assert not response.HasField("claims")


def test_an_email_past_the_limit_is_an_invalid_argument(users, service_metadata):
    request = users_pb2.CheckCredentialsRequest(email="a" * 300 + "@example.com", password="x")

    with pytest.raises(grpc.RpcError) as refused:
        users.CheckCredentials(request, metadata=service_metadata, timeout=10)

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_customer_summary_is_what_the_rest_api_wrote(users, service_metadata):
    user = UserFactory(is_staff=True)

    summary = users.GetCustomerSummary(
        users_pb2.GetCustomerSummaryRequest(user_id=str(user.pk)),
        metadata=service_metadata,
        timeout=10,
    )

    assert (summary.id, summary.is_active, list(summary.roles)) == (user.pk, True, ["staff"])
    assert summary.credit_limit == "1000.00"
    assert summary.date_joined.endswith("Z")


@pytest.mark.parametrize("user_id", ["999999", "not-a-number", ""])
def test_an_unknown_customer_is_not_found(users, service_metadata, user_id):
    with pytest.raises(grpc.RpcError) as refused:
        users.GetCustomerSummary(
            users_pb2.GetCustomerSummaryRequest(user_id=user_id),
            metadata=service_metadata,
            timeout=10,
        )

    assert refused.value.code() is grpc.StatusCode.NOT_FOUND


# --- the interceptor: the same service tokens /internal/ took ---------------------------------


def _summary_call(users, metadata):
    with pytest.raises(grpc.RpcError) as refused:
        users.GetCustomerSummary(
            users_pb2.GetCustomerSummaryRequest(user_id="1"), metadata=metadata, timeout=10
        )
    return refused.value


def test_a_call_without_a_token_is_unauthenticated(users):
    assert _summary_call(users, ()).code() is grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "value", ["Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer", "bearer  "]
)
def test_a_call_with_a_wrong_token_is_unauthenticated(users, value):
    assert _summary_call(users, (("authorization", value),)).code() is (
        grpc.StatusCode.UNAUTHENTICATED
    )


def test_an_expired_service_token_is_unauthenticated(users, make_token):
    token = make_token(sub="service:gateway", scope="internal", lifetime=-120)

    refused = _summary_call(users, (("authorization", f"Bearer {token}"),))

    assert refused.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in refused.details()


def test_a_customers_token_is_permission_denied(users, make_token):
    token = make_token(sub="7", roles=["customer"])

    refused = _summary_call(users, (("authorization", f"Bearer {token}"),))

    assert refused.code() is grpc.StatusCode.PERMISSION_DENIED


# --- health and reflection: no token -----------------------------------------------------------


def test_health_is_serving_when_the_readiness_checks_pass(grpc_serve):
    health = health_pb2_grpc.HealthStub(grpc_serve(ready=ready_now))

    overall = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    users = health.Check(health_pb2.HealthCheckRequest(service="users.v1.UsersService"))

    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert users.status == health_pb2.HealthCheckResponse.SERVING


def test_health_is_not_serving_when_a_readiness_check_fails(grpc_serve):
    health = health_pb2_grpc.HealthStub(grpc_serve(ready=lambda: False))

    answer = health.Check(health_pb2.HealthCheckRequest(service="users.v1.UsersService"))

    assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_the_services(grpc_serve):
    reflection = reflection_pb2_grpc.ServerReflectionStub(grpc_serve())

    answers = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
    )
    names = {
        service.name for answer in answers for service in answer.list_services_response.service
    }

    assert {"users.v1.UsersService", "grpc.health.v1.Health"} <= names


def test_the_callers_trace_context_is_read_from_the_metadata(users, service_metadata, spans):
    user = UserFactory()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"

    users.GetCustomerSummary(
        users_pb2.GetCustomerSummaryRequest(user_id=str(user.pk)),
        metadata=(*service_metadata, ("traceparent", traceparent)),
        timeout=10,
    )

    server_span = spans.named("/users.v1.UsersService/GetCustomerSummary")
    assert f"{server_span.context.trace_id:032x}" == trace_id
    assert f"{server_span.parent.span_id:016x}" == "00f067aa0ba902b7"


# --- what consumers rely on (contracts/consumers/*/users.v1.*.json) --------------------


def test_every_consumers_contract_holds_for_what_check_credentials_answers(users, service_metadata):
    UserFactory(email="ann@example.com", name="Ann")
    method = "users.v1.UsersService.CheckCredentials"
    answers = [
        users.CheckCredentials(
            users_pb2.CheckCredentialsRequest(email="ann@example.com", password=password),
            metadata=service_metadata,
            timeout=10,
        )
        for password in (PASSWORD, "nope")
    ]

    assert contracts_of(message=method)  # somebody relies on it: else nothing is checked
    for answer in answers:
        assert contract_verify(method, rpc_message_dict(answer)) == []


def test_every_consumers_contract_holds_for_a_customer_summary(users, service_metadata):
    user = UserFactory(name="")
    method = "users.v1.UsersService.GetCustomerSummary"

    summary = users.GetCustomerSummary(
        users_pb2.GetCustomerSummaryRequest(user_id=str(user.pk)),
        metadata=service_metadata,
        timeout=10,
    )

    assert contracts_of(message=method)
    assert contract_verify(method, rpc_message_dict(summary)) == []
    # A change that would break the gateway fails here, naming it.
    broken = {**rpc_message_dict(summary), "credit_available": "lots"}
    assert contract_verify(method, broken) == [
        f"gateway relies on {method} credit_available: 'lots' does not match "
        "'^-?\\\\d+\\\\.\\\\d{2}$'"
    ]
