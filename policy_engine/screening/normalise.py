"""Names → comparable keys: the same normalisation for a request's name and for every list entry.

Steps, in order (each says why):

1. NFKC: compatibility forms fold to one spelling (full-width ``ＡＢＣ``, ligatures ``ﬁ``, circled digits).
2. Zero-width and joiner characters (U+200B–U+200D, U+2060, U+FEFF) are removed, not refused: real lists carry
   them (U+200C ZERO WIDTH NON-JOINER inside Persian names), and a caller's copy of the name usually lacks them.
3. Legal-form words written in their own script (``有限公司``, ``株式会社``, ``주식회사``) are cut before
   transliteration: a CJK name has no spaces, so afterwards they could not be told from the name.
4. Transliteration with ``anyascii`` (every script to ASCII; Cyrillic, Greek, Arabic, Persian, Hebrew, Thai,
   Korean, Japanese kana, Chinese to pinyin without tones; diacritics go with it: ``Çelik`` → ``Celik``).
5. Casefold; dots and apostrophes are deleted (``L.L.C.`` → ``llc``, ``O'Brien`` → ``obrien``, Arabic hamza
   ``'``), every other non-alphanumeric character separates tokens.
6. Legal-form tokens (``llc``, ``ltd``, ``gmbh``, ``ooo`` from ``ООО``, ...) are dropped, unless nothing else
   is left (a list entry called "Holding Company Ltd" keeps its words rather than vanish).
7. Token order is made irrelevant: the key is the sorted tokens (``PUTIN, Vladimir`` = ``Vladimir Putin``).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from anyascii import anyascii

#: Invisible characters that real lists contain inside names (U+200C in Persian): removed before anything else.
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))

#: Legal forms written in scripts without spaces between words: cut as text before transliteration (longest
#: first, so 股份有限公司 is not left as 股份).
SCRIPT_LEGAL_FORMS = ("股份有限公司", "有限责任公司", "有限責任公司", "有限公司", "株式会社", "有限会社", "合同会社",
                      "주식회사", "유한회사", "(주)", "（株）", "(株)", "公司")

#: Legal-form tokens after transliteration and casefolding: company-type words that say nothing about who a
#: party is (Cyrillic ООО/ЗАО/ПАО arrive here as ooo/zao/pao).
LEGAL_FORMS = frozenset((
    "llc", "ltd", "limited", "inc", "incorporated", "corp", "corporation", "co", "company", "plc", "llp", "lp",
    "lllp", "pllc", "pc", "gmbh", "mbh", "ag", "kg", "ohg", "ug", "ev", "kgaa", "se", "sa", "sas", "sasu", "sarl",
    "srl", "spa", "sl", "slu", "snc", "bv", "nv", "cv", "vof", "oy", "oyj", "ab", "asa", "aps", "as", "kk", "yk",
    "gk", "pte", "pty", "bhd", "sdn", "tbk", "pt", "jsc", "ojsc", "cjsc", "pjsc", "ooo", "oao", "zao", "pao", "tov",
    "pat", "ip", "fze", "fzco", "fzc", "fzllc", "wll",
))

_DELETE = re.compile(r"[.'`´’‘]")
_SEPARATE = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True, slots=True)
class NormalName:
    """A name as the screener compares it."""

    tokens: tuple[str, ...]  # sorted, legal forms dropped
    key: str  # the sorted tokens joined with a space
    #: the tokens run together in written order: ``Xi Jinping`` and ``习近平`` (``xijinping``) meet here
    joined: str


def normalise(text: str) -> NormalName:
    """The comparable form of a name (empty tokens when nothing comparable is left: punctuation only)."""
    if not text.isascii():  # steps 1-4 leave ASCII text as it is
        text = unicodedata.normalize("NFKC", text).translate(ZERO_WIDTH)
        for form in SCRIPT_LEGAL_FORMS:
            if form in text:
                text = text.replace(form, " ")
        text = anyascii(text)
    ascii_text = _DELETE.sub("", text.casefold())
    ordered = tuple(t for t in _SEPARATE.split(ascii_text) if t)
    kept = tuple(t for t in ordered if t not in LEGAL_FORMS) or ordered
    tokens = tuple(sorted(kept))
    return NormalName(tokens, " ".join(tokens), "".join(kept))
