"""A one-line progress bar for commands: redrawn on a terminal, printed once at the end in logs."""

import sys

from django.core.management.base import OutputWrapper


def show_progress(stdout: OutputWrapper, done: int, total: int, unit: str, width: int = 30) -> None:
    filled = width * done // total if total else width
    line = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {unit}"
    interactive = getattr(stdout, "isatty", lambda: False)() or sys.stdout.isatty()
    if interactive:
        stdout.write("\r" + line, ending="\n" if done == total else "")
        stdout.flush()
    elif done == total:
        stdout.write(line)
