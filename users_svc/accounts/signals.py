"""Every user has a credit account, however the user was created (API, admin, createsuperuser)."""

from typing import Any

from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.models import CreditAccount, User


@receiver(post_save, sender=User, dispatch_uid="accounts.credit_account_for_new_user")
def credit_account_for_new_user(
    sender: type[User], instance: User, created: bool, **kwargs: Any
) -> None:
    if created:
        CreditAccount.objects.get_or_create(user=instance)
