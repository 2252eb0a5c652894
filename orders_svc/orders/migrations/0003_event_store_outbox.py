"""The event store becomes the outbox: every event gets its envelope id and publishing marks.

Events recorded before this migration were never published; they stay
unpublished, so the relay sends them and consumers catch up.
"""

import uuid

from django.db import migrations, models


def give_each_event_an_id(apps, schema_editor):
    OrderEvent = apps.get_model("orders", "OrderEvent")
    for event in OrderEvent.objects.filter(event_id__isnull=True).only("id").iterator():
        OrderEvent.objects.filter(id=event.id).update(event_id=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_sagas"),
    ]

    operations = [
        migrations.AddField(
            model_name="orderevent",
            name="event_id",
            field=models.UUIDField(null=True, editable=False),
        ),
        migrations.RunPython(give_each_event_an_id, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="orderevent",
            name="event_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AddField(
            model_name="orderevent",
            name="traceparent",
            field=models.CharField(blank=True, max_length=55),
        ),
        migrations.AddField(
            model_name="orderevent",
            name="published_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="orderevent",
            name="attempts",
            field=models.PositiveIntegerField(default=0, help_text="failed publish attempts"),
        ),
        migrations.AddField(
            model_name="orderevent",
            name="last_error",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddIndex(
            model_name="orderevent",
            index=models.Index(
                condition=models.Q(("published_at__isnull", True)),
                fields=["id"],
                name="order_event_unpublished",
            ),
        ),
    ]
