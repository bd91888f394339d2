"""A helper module of the ranked_words package, imported relatively."""

from __future__ import annotations


def clean_words(text: str) -> list[str]:
    """The words of ``text``, lower-cased and without punctuation."""
    return [word.strip(".,;:!?").lower() for word in text.split() if word.strip(".,;:!?")]
