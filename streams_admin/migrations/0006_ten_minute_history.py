"""The 10-minute tier of the history (trends/storage.py TEN) from the minute chunks written
before it existed, so a 7-day chart shows the days before the upgrade. A batch of series per
transaction (memory and locks bounded); the sampler may run meanwhile: what it folds wins
(storage.backfill)."""

from django.db import migrations, transaction

BATCH = 100  # series per transaction


def forwards(apps, schema_editor):
    from streams_admin.trends import storage

    chunk = apps.get_model("streams_admin", "Chunk")
    series = apps.get_model("streams_admin", "Series")
    ids = list(series.objects.order_by("id").values_list("id", flat=True))
    for i in range(0, len(ids), BATCH):
        with transaction.atomic(using=schema_editor.connection.alias):
            storage.backfill(chunk, ids[i:i + BATCH])


def backwards(apps, schema_editor):
    from streams_admin.trends import storage

    apps.get_model("streams_admin", "Chunk").objects.filter(resolution=storage.TEN).delete()


class Migration(migrations.Migration):
    atomic = False  # a transaction per batch (above), not one over the whole history

    dependencies = [
        ("streams_admin", "0005_alerts"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
