"""Mask personal data in Chinese customer-service text with readable placeholders.

Usage::

    from llmcourse.data.pii import mask_pii, find_pii
    text, counts = mask_pii("我手机13812345678，邮箱 li.ming@example.com")
    text     # '我手机[手机号]，邮箱 [邮箱]'
    counts   # Counter({'phone': 1, 'email': 1})
    find_pii(text)   # [] : nothing left to find

Kinds and placeholders (:data:`PLACEHOLDERS`): e-mail ``[邮箱]``, 18-digit resident ID ``[身份证号]``,
bank card (16-19 digits, optionally grouped by 4) ``[银行卡号]``, mainland mobile number
(optionally ``+86``, spaces or hyphens) ``[手机号]``, landline with area code ``[座机号]``.
Full-width digits and ``＠`` count as their ASCII forms. Names and addresses are NOT detected:
regular expressions cannot find them reliably, so review free text by hand as well.

Masking repeats until nothing is found, so ``find_pii(mask_pii(t)[0]) == []`` for any ``t``
and masking twice changes nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

PLACEHOLDERS = {
    "email": "[邮箱]",
    "id_card": "[身份证号]",
    "bank_card": "[银行卡号]",
    "phone": "[手机号]",
    "landline": "[座机号]",
}
KIND_NAMES = {kind: placeholder.strip("[]") for kind, placeholder in PLACEHOLDERS.items()}

# Checked in this order: an e-mail may contain a phone number, and an ID or a card number
# contains 11-digit runs that look like phone numbers.
_PATTERNS = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "id_card": re.compile(r"(?<![0-9])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])"
                          r"(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9])"),
    "bank_card": re.compile(r"(?<![0-9])[0-9]{4}(?:[ -]?[0-9]{4}){3}(?:[ -]?[0-9]{1,3})?(?![0-9])"),
    "phone": re.compile(r"(?<![0-9])(?:\+?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}(?![0-9])"),
    "landline": re.compile(r"(?<![0-9])0[1-9][0-9]{1,2}-[0-9]{7,8}(?![0-9])"),
}
# Full-width forms (U+FF01..U+FF5E) map one-to-one onto ASCII, so match positions stay valid.
_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}


@dataclass(frozen=True)
class PiiMatch:
    kind: str
    start: int
    end: int
    value: str


def find_pii(text: str) -> list[PiiMatch]:
    """Every personal-data span in ``text``, left to right, without overlaps."""
    shadow = text.translate(_HALF_WIDTH)
    taken: list[PiiMatch] = []
    for kind, pattern in _PATTERNS.items():
        for match in pattern.finditer(shadow):
            if not any(match.start() < other.end and other.start < match.end() for other in taken):
                taken.append(PiiMatch(kind, match.start(), match.end(), text[match.start():match.end()]))
    return sorted(taken, key=lambda found: found.start)


def mask_pii(text: str) -> tuple[str, Counter]:
    """Replace personal data by placeholders; return the new text and a count per kind."""
    counts: Counter = Counter()
    for _ in range(10):  # a replacement can expose a new match next to it; a few rounds always settle
        found = find_pii(text)
        if not found:
            break
        pieces, position = [], 0
        for match in found:
            pieces += [text[position:match.start], PLACEHOLDERS[match.kind]]
            position = match.end
            counts[match.kind] += 1
        text = "".join(pieces) + text[position:]
    return text, counts
