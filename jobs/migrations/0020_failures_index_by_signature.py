from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("jobs", "0019_failure_groups")]

    operations = [
        migrations.RemoveIndex(model_name="job", name="job_failures_idx"),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("status", "failed")),
                fields=["failure_signature", "finished_at", "owner"],
                name="job_failures_idx",
            ),
        ),
    ]
