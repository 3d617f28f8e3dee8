from django.core.mail import EmailMessage, get_connection


def test_smtp_sink_receives_and_refuses(smtp_sink) -> None:
    smtp_sink.refuse["gone@example.org"] = "550 5.1.1 no such user"
    with get_connection() as connection:
        sent = connection.send_messages([EmailMessage("Hello", "Body", "a@example.org", ["b@example.org"])])
    assert sent == 1
    assert [m["Subject"] for m in smtp_sink.parsed()] == ["Hello"]
    assert smtp_sink.messages[0].rcpt_tos == ["b@example.org"]
