from django.core.management.base import BaseCommand

from papers.services import text


class Command(BaseCommand):
    help = (
        "Fit the text model's IDF on papers/sample_data/*.txt and store it in papers/services/idf.npz, "
        "which the workers load. Run it after changing the sample files or the tokenizer."
    )

    def handle(self, *args, **options) -> None:
        text.idf_store()
        self.stdout.write(f"stored {text.IDF_FILE}")
