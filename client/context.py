"""What every command is given: the ingress to talk to and the console to write to."""

from __future__ import annotations

from dataclasses import dataclass

import click
from rich.console import Console
from rich.text import Text

from client.answers import EventPage
from client.ingress import Ingress


@dataclass
class Client:
    ingress: Ingress
    console: Console  # stdout: what the command shows
    errors: Console  # stderr: notes that must not mix with an output meant for a pipe

    def say(self, text: str, style: str = "") -> None:
        self.console.print(Text(text, style=style))

    def next_seq(self, session: str) -> int:
        """The seq the session's next event will get (1 for a session with no log yet)."""
        page = EventPage.model_validate(self.ingress.call("Events", session, "read", {"after": 0, "limit": 1}))
        return page.next_seq


pass_client = click.make_pass_decorator(Client)
