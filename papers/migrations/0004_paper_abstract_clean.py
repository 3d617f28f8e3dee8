from django.db import migrations, models

from papers.services.latex import latex_to_text


def fill(apps, schema_editor):
    Paper = apps.get_model("papers", "Paper")
    batch = []
    for paper in Paper.objects.only("id", "abstract").iterator(chunk_size=2000):
        paper.abstract_clean = latex_to_text(paper.abstract)
        batch.append(paper)
        if len(batch) == 2000:
            Paper.objects.bulk_update(batch, ["abstract_clean"])
            batch = []
    Paper.objects.bulk_update(batch, ["abstract_clean"])


class Migration(migrations.Migration):
    dependencies = [("papers", "0003_specific_topics")]

    operations = [
        migrations.AddField(
            model_name="paper",
            name="abstract_clean",
            field=models.TextField(default="", editable=False),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
