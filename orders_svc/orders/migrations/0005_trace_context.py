"""The trace context kept whole (traceparent and tracestate), not the traceparent alone."""

from django.db import migrations, models


def traceparent_to_context(apps, schema_editor):
    for name in ("OrderEvent", "Saga"):
        model = apps.get_model("orders", name)
        for row in model.objects.exclude(traceparent="").only("pk", "traceparent").iterator():
            model.objects.filter(pk=row.pk).update(trace_context={"traceparent": row.traceparent})


def context_to_traceparent(apps, schema_editor):
    for name in ("OrderEvent", "Saga"):
        model = apps.get_model("orders", name)
        for row in model.objects.only("pk", "trace_context").iterator():
            traceparent = (row.trace_context or {}).get("traceparent", "")
            model.objects.filter(pk=row.pk).update(traceparent=traceparent[:55])


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0004_saga_traceparent"),
    ]

    operations = [
        migrations.AddField(
            model_name="orderevent",
            name="trace_context",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="saga",
            name="trace_context",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(traceparent_to_context, context_to_traceparent),
        migrations.RemoveField(model_name="orderevent", name="traceparent"),
        migrations.RemoveField(model_name="saga", name="traceparent"),
    ]
