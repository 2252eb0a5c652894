from django.conf import settings
from django.db import migrations


def create_missing_accounts(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    CreditAccount = apps.get_model("accounts", "CreditAccount")
    CreditAccount.objects.bulk_create(
        CreditAccount(user=user, credit_limit=settings.CUSTOMER_DEFAULT_CREDIT_LIMIT)
        for user in User.objects.filter(credit__isnull=True)
    )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0002_addresses_and_credit")]

    operations = [migrations.RunPython(create_missing_accounts, migrations.RunPython.noop)]
