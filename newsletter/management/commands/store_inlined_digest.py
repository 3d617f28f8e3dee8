from django.core.management.base import BaseCommand

from newsletter.services import digest_templates


class Command(BaseCommand):
    help = (
        "Inline the CSS of the HTML digest template (premailer) and store it in "
        "newsletter/services/digest_inlined.json, which the workers read instead of inlining it each. "
        "Run it after editing the digest's HTML template or its CSS."
    )

    def handle(self, *args, **options) -> None:
        digest_templates.inlined_store()
        self.stdout.write(f"stored {digest_templates.INLINED_FILE}")
