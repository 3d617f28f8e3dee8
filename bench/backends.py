from django.core.mail.backends.base import BaseEmailBackend


class SerializeOnlyBackend(BaseEmailBackend):
    """Builds the exact bytes an SMTP backend would send, then drops them: "build only" throughput."""

    def send_messages(self, email_messages) -> int:
        for message in email_messages:
            message.message().as_bytes(linesep="\r\n")
        return len(email_messages)
