"""WebhookEvent.task keeps its index but loses its database constraint (docs/reliability.md
W13): checking the constraint made a webhook's insert wait behind a row lock on the task."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("imagen_assets", "0006_stored_files"),
    ]

    operations = [
        migrations.AlterField(
            model_name="webhookevent",
            name="task",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="webhook_events",
                to="imagen_assets.generationtask",
                verbose_name="task",
            ),
        ),
    ]
