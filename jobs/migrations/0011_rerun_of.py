import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0010_preferences_and_presets'),
    ]

    operations = [
        migrations.CreateModel(
            name='Rerun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('original', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='rerun_links', to='jobs.job')),
                ('rerun', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='rerun_link', to='jobs.job')),
            ],
        ),
    ]
