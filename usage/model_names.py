"""Model names' one normal form, so that one model is one model however a client spells it.

A dashboard that shows ``Flux`` and a fullwidth ``Flux`` as two models, or counts a name
with an invisible zero-width space apart from the visible one, is wrong for its reader,
who sees the same name twice. So every name is stored, filtered and compared as:

- NFKC: compatibility forms become their plain characters (a fullwidth ``F`` and a no-break
  space become ``F`` and a space, the ligature ``ﬁ`` becomes ``fi``), and composed and
  decomposed accents become one spelling (``é`` is always U+00E9);
- without format characters (Unicode category Cf): zero-width spaces and joiners, the
  byte-order mark, soft hyphens, and the bidirectional controls (a right-to-left override
  would show the name reversed) are removed, not refused, so the generation still counts;
- with each run of white space as one space, and none at either end.

Case is kept (``flux`` and ``Flux`` are two names), and so are letters that only look
alike (a Cyrillic ``a``, U+0430, is not a Latin one): those are different text, not different
spellings of the same text.

Ingestion applies it (``usage.ingest``), the admin's model filter and search apply it to
what staff type, and migration 0006 applied it to the names stored before.
"""

import unicodedata


def normal_model_name(name: str) -> str:
    """``name`` in the normal form above; the same again when applied twice."""
    if not name.isascii():  # ASCII (nearly every name) is already NFKC, with no Cf
        # Format characters first: removed afterwards, they could leave a letter and an
        # accent side by side that NFKC would have composed.
        name = "".join([c for c in name if unicodedata.category(c) != "Cf"])
        name = unicodedata.normalize("NFKC", name)
    return " ".join(name.split())
