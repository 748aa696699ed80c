"""Danmaku.checked: whether moderation's full check has decided a comment.

Rows written before it are taken as checked (they were each reviewed by
their own task, or their chance is long gone); new rows are not. The column
keeps a database default at every step (true while it is added, then false),
so the processes of a rolling deploy that still INSERT without it never meet
a NOT NULL column without a default.

The partial index is built with CREATE INDEX CONCURRENTLY on PostgreSQL: a
plain CREATE INDEX scans the whole table holding a lock that stops every
send for the scan's duration. CONCURRENTLY cannot run inside a transaction,
hence ``atomic = False``; each step is one statement and safe to run again
(the index is created IF NOT EXISTS).
"""

from django.db import migrations, models

INDEX = models.Index(fields=["ts_ms"], name="danmaku_unchecked", condition=models.Q(("checked", False)))


def add_index(apps, schema_editor):
    model = apps.get_model("danmaku", "Danmaku")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "danmaku_unchecked" '
            'ON "danmaku_danmaku" ("ts_ms") WHERE NOT "checked"'
        )
    else:
        schema_editor.add_index(model, INDEX)


def remove_index(apps, schema_editor):
    model = apps.get_model("danmaku", "Danmaku")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('DROP INDEX CONCURRENTLY IF EXISTS "danmaku_unchecked"')
    else:
        schema_editor.remove_index(model, INDEX)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("danmaku", "0009_cache_change"),
    ]

    operations = [
        # Existing rows: checked.
        migrations.AddField(
            model_name="danmaku",
            name="checked",
            field=models.BooleanField(default=False, db_default=True),
        ),
        # New rows: not checked, whoever writes them.
        migrations.AlterField(
            model_name="danmaku",
            name="checked",
            field=models.BooleanField(default=False, db_default=False),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="danmaku", index=INDEX)],
            database_operations=[migrations.RunPython(add_index, remove_index)],
        ),
    ]
