"""What docs/api.md promises about errors, read from it: the codes of its table of errors."""

import re
from pathlib import Path

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def documented_error_codes() -> set[str]:
    """Every code in the first column of the table under "## Errors"."""
    section = API_DOC.read_text().split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")][1:]  # not the head
    return {code for row in rows for code in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
