from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# LOGIN_THROTTLE's allowances and the variables they come from.
_ALLOWANCES = {
    "CLIENT": "LOGIN_RATE_PER_IP",
    "ACCOUNT_CLIENT": "LOGIN_RATE_PER_EMAIL",
    "ACCOUNT": "LOGIN_RATE_PER_ACCOUNT",
}


class IdentityConfig(AppConfig):
    name = "identity"
    verbose_name = "Identity (tokens)"

    def ready(self) -> None:
        from proxy.routes import Rate

        # A mistyped allowance stops boot here, not the first failed login.
        for key, variable in _ALLOWANCES.items():
            try:
                Rate.parse(settings.LOGIN_THROTTLE[key])
            except ValueError as error:
                raise ImproperlyConfigured(f"{variable}: {error}") from error
