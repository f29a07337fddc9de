"""File-name search ignores case: each job keeps its name case-folded (jobs.models.name_key) in
an indexed column, which replaces the index on the name as sent.

Existing rows are filled in two passes, fast at a million jobs: SQL's LOWER() for every row (for
ASCII the same as Python's casefold, on either database), then Python for the names with other
characters, which SQLite's LOWER() leaves as they are. The index (with each job's time, for the
page's order) is built once they are filled.
"""

from itertools import islice

from django.db import migrations, models


def fill_search_names(apps, schema_editor) -> None:
    job_model = apps.get_model("jobs", "Job")
    table = schema_editor.quote_name(job_model._meta.db_table)
    schema_editor.execute(f"UPDATE {table} SET search_name = LOWER(source_name)")  # noqa: S608
    not_ascii = job_model.objects.filter(source_name__regex=r"[^\x01-\x7f]")
    rows = not_ascii.values_list("pk", "source_name").iterator(chunk_size=2000)
    while batch := list(islice(rows, 2000)):
        job_model.objects.bulk_update(
            [job_model(pk=pk, search_name=name.casefold()[:255]) for pk, name in batch],
            ["search_name"],
        )


class Migration(migrations.Migration):
    # PostgreSQL refuses CREATE INDEX on a table whose rows this transaction updated while
    # their (deferred) foreign-key checks are pending: each step commits on its own.
    atomic = False
    dependencies = [("jobs", "0008_compact_rollups_hourly")]

    operations = [
        migrations.AddField(
            model_name="job",
            name="search_name",
            field=models.CharField(default="", editable=False, max_length=255),
        ),
        migrations.RunPython(fill_search_names, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                fields=["search_name", "created_at"],
                opclasses=["varchar_pattern_ops", "timestamptz_ops"],
                name="job_search_idx",
            ),
        ),
        migrations.AlterField(
            model_name="job",
            name="source_name",
            field=models.CharField(help_text="The uploaded file's name.", max_length=255),
        ),
    ]
