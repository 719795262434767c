"""The site's mail settings deliver through SMTP, to the real server the tests start."""

from django.core.mail import send_mail

from tests.mail_server import body_of, links_in


def test_mail_sent_by_the_site_arrives_at_the_smtp_server(mail_server):
    send_mail("Hello", "Open http://127.0.0.1/x?y=1 now.", None, ["ana@example.com"])

    [message] = mail_server.wait_for(1)
    assert message["Subject"] == "Hello"
    assert message["To"] == "ana@example.com"
    assert "Usage site" in message["From"]
    assert body_of(message).strip() == "Open http://127.0.0.1/x?y=1 now."
    assert links_in(message) == ["http://127.0.0.1/x?y=1"]
    assert mail_server.to("bo@example.com") == []
