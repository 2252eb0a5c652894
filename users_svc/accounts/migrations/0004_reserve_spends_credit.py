"""Reserving now spends an order's credit at once (``captured``) and counts the order;
``order.rejected`` gives both back. Reservations still ``held`` from before are moved
to that state here (and their orders counted), so the new code finishes them: an
approval needs nothing more, a rejection or a cancel gives the credit back. Deploy
with the workers and consumers stopped (the manifests' Recreate strategy), so no old
code holds more."""

from django.db import migrations
from django.db.models import F


def holds_capture(apps, schema_editor):
    CreditReservation = apps.get_model("accounts", "CreditReservation")
    User = apps.get_model("accounts", "User")
    held = CreditReservation.objects.filter(state="held", customer__isnull=False)
    for customer_id in held.values_list("customer_id", flat=True):
        User.objects.filter(pk=customer_id).update(order_count=F("order_count") + 1)
    held.update(state="captured")


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_credit_accounts_for_existing_users")]

    operations = [migrations.RunPython(holds_capture, migrations.RunPython.noop)]
