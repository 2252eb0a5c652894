"""Reserving now takes an order's units off the shelf at once (``committed``) and counts
them sold; ``order.rejected`` gives them back. Reservations still ``held`` from before
are moved to that state here, so the new code finishes them: an approval needs nothing
more, a rejection or a cancel gives the units back. Deploy with the workers and
consumers stopped (the manifests' Recreate strategy), so no old code holds more."""

from django.db import migrations
from django.db.models import F


def holds_commit(apps, schema_editor):
    StockReservation = apps.get_model("catalog", "StockReservation")
    StockReservationLine = apps.get_model("catalog", "StockReservationLine")
    Stock = apps.get_model("catalog", "Stock")
    Product = apps.get_model("catalog", "Product")
    held = StockReservation.objects.filter(state="held")
    for line in StockReservationLine.objects.filter(reservation__in=held).order_by("product_id"):
        Stock.objects.filter(pk=line.product_id).update(
            on_hand=F("on_hand") - line.quantity, reserved=F("reserved") - line.quantity
        )
        Product.objects.filter(pk=line.product_id).update(
            sold_count=F("sold_count") + line.quantity
        )
    held.update(state="committed")


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [migrations.RunPython(holds_commit, migrations.RunPython.noop)]
