"""A real SMTP server on a loopback port, for tests that send mail.

The site talks to it with Django's own SMTP backend, as it would to a production relay; the
server keeps every message it accepts, parsed, so that a test can read the addresses, the
subject and the body, and follow a link in it.
"""

import email
import email.policy
import re
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.live_server import HOST, free_port

LINK_RE = re.compile(r"https?://[^\s<>\"']+")


class _Keeper:
    """The aiosmtpd handler: keeps each accepted message."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append(message)
            self.arrived.notify_all()
        return "250 Message accepted for delivery"


class MailServer:
    """An SMTP server on ``HOST``:``port`` that keeps what it receives in ``messages``."""

    def __init__(self) -> None:
        self.port = free_port()
        self._keeper = _Keeper()
        self._controller = Controller(self._keeper, hostname=HOST, port=self.port)

    def start(self) -> "MailServer":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        with self._keeper.arrived:
            return list(self._keeper.messages)

    def clear(self) -> None:
        with self._keeper.arrived:
            self._keeper.messages.clear()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[EmailMessage]:
        """The first ``count`` messages, waiting up to ``timeout`` seconds for them to arrive."""
        deadline = time.monotonic() + timeout
        with self._keeper.arrived:
            while len(self._keeper.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} messages, got {len(self._keeper.messages)}"
                    )
                self._keeper.arrived.wait(left)
            return list(self._keeper.messages[:count])

    def to(self, address: str) -> list[EmailMessage]:
        """The messages addressed to ``address``."""
        return [m for m in self.messages if address in str(m.get("To", ""))]

    def settings(self) -> dict[str, object]:
        """Django settings that send mail here."""
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": HOST,
            "EMAIL_PORT": self.port,
            "EMAIL_USE_TLS": False,
            "EMAIL_USE_SSL": False,
            "EMAIL_HOST_USER": "",
            "EMAIL_HOST_PASSWORD": "",
        }

    def environment(self) -> dict[str, str]:
        """Environment variables that send a separate process's mail here."""
        return {"EMAIL_HOST": HOST, "EMAIL_PORT": str(self.port), "EMAIL_USE_TLS": "0"}


def body_of(message: EmailMessage) -> str:
    """The plain-text body of a message."""
    part = message.get_body(preferencelist=("plain", "html"))
    assert part is not None, "the message has no text body"
    return part.get_content()


def links_in(message: EmailMessage) -> list[str]:
    """Every http(s) link in a message's plain-text body, in order."""
    return LINK_RE.findall(body_of(message))


@pytest.fixture
def mail_server(settings) -> Iterator[MailServer]:
    """A real SMTP server on a loopback port; the site's mail goes to it during the test."""
    server = MailServer().start()
    for name, value in server.settings().items():
        setattr(settings, name, value)
    try:
        yield server
    finally:
        server.stop()
