"""Words for numbers, units, currencies, dates and times in IndicF5's 11 languages and English.

Every word comes from a kept library; our only table is ``_MINUS_POINT`` (the spoken minus sign
and decimal point), copied from CLDR's number-spelling rules, which babel does not ship:
- cardinal numbers: ``indic-numtowords`` (AI4Bharat; Indian lakh/crore grouping). It takes ASCII
  integers and reads more than 9 digits one by one, so amounts of 100 crore and more are composed
  here as ``<crores> crore <rest>``, with the crore word and its linking form taken from the
  library's own reading of ``2,00,00,000 + rest``;
- currency names, unit names (percent, km, kg, °C ...), month names and the order
  of day, month and year: CLDR through ``babel`` (with the locale's plural rules).

``Speller(lang)`` holds one language's locale; it keeps no state between calls.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from decimal import Decimal

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_decimal, get_currency_name, get_currency_unit_pattern
from babel.units import UnknownUnitError, format_unit, get_unit_name
from indic_numtowords import num2words

# ISO 639-1 code -> CLDR locale. English is read the Indian way (lakh, crore, "15 August 1947").
LOCALES = {
    "as": "as",
    "bn": "bn",
    "gu": "gu",
    "hi": "hi",
    "kn": "kn",
    "ml": "ml",
    "mr": "mr",
    "or": "or",
    "pa": "pa",
    "ta": "ta",
    "te": "te",
    "en": "en_IN",
}
LANGUAGES = tuple(LOCALES)

# The minus sign and the decimal point as spoken, from CLDR's rule-based number format
# (unicode-org/cldr, common/rbnf/<lang>.xml, ruleset %spellout-cardinal, rules "-x" and "x.x").
# CLDR has no as.xml: Assamese uses the Bengali-script words of bn.xml (ঋণ, দশমিক), which it shares.
_MINUS_POINT = {
    "as": ("ঋণ", "দশমিক"),
    "bn": ("ঋণ", "দশমিক"),
    "gu": ("નકારાત્મક", "દશાંશ"),
    "hi": ("ऋण", "दशमलव"),
    "kn": ("ಋಣ", "ದಶಮಾಂಶ"),
    "ml": ("മൈനസ്", "ദശാംശം"),
    "mr": ("उणे", "दशांश"),
    "or": ("ଋଣ", "ଦଶମିକ"),
    "pa": ("ਰਿਣ", "ਦਸ਼ਮਲਵ"),
    "ta": ("எதிர்ம", "புள்ளி"),
    "te": ("ఋణ", "దశాంశం"),
    "en": ("minus", "point"),
}

# Unicode block of each language's script (for "is this CLDR word speakable in the language?").
SCRIPT_BLOCKS = {
    "as": (0x0980, 0x09FF),
    "bn": (0x0980, 0x09FF),
    "gu": (0x0A80, 0x0AFF),
    "hi": (0x0900, 0x097F),
    "kn": (0x0C80, 0x0CFF),
    "ml": (0x0D00, 0x0D7F),
    "mr": (0x0900, 0x097F),
    "or": (0x0B00, 0x0B7F),
    "pa": (0x0A00, 0x0A7F),
    "ta": (0x0B80, 0x0BFF),
    "te": (0x0C00, 0x0C7F),
    "en": (0x0041, 0x024F),
}

MAX_CARDINAL_DIGITS = 15  # longer digit strings are read digit by digit (no one says 10^15 crore)
_LIBRARY_LIMIT = 10**9  # indic-numtowords reads 10+ digits one by one
_CRORE = 10**7
_SPACES = re.compile(r"[\s\u00a0\u202f]+")
_ASCII_DIGITS = re.compile(r"[0-9]+")


def _clean(text: str) -> str:
    """One ordinary space between words (the library and CLDR sometimes give two, or NBSPs)."""
    return _SPACES.sub(" ", text).strip()


class Speller:
    """Spoken forms in one language. ``lang`` is one of ``LANGUAGES``."""

    def __init__(self, lang: str):
        self.lang = lang
        self.locale = Locale.parse(LOCALES[lang])
        self.minus, self.point = _MINUS_POINT[lang]

    # ------------------------------------------------------------------ numbers
    def cardinal(self, n: int) -> str:
        """Non-negative integer -> words (Indian grouping; composed above 99 crore)."""
        if n < _LIBRARY_LIMIT:
            return _clean(num2words(str(n), lang=self.lang))
        crores, rest = divmod(n, _CRORE)
        # "two crore <rest>" in the library's words, minus "two": the crore word in its linking form
        two = _clean(num2words("2", lang=self.lang))
        tail = _clean(num2words(str(2 * _CRORE + rest), lang=self.lang))
        if not tail.startswith(two + " "):
            return self.digits(str(n))
        return f"{self.cardinal(crores)} {tail[len(two) + 1 :]}"

    def digits(self, ascii_digits: str) -> str:
        """'0120' -> 'zero one two zero' (phone numbers, codes, decimal fractions)."""
        return " ".join(self.cardinal(int(c)) for c in ascii_digits)

    def number(self, integer: str, fraction: str | None = None, *, whole_digits: bool = False) -> str:
        """ASCII integer part (no separators) + optional fraction digits -> words.

        whole_digits: read the integer part digit by digit (phone-like strings)."""
        if whole_digits or len(integer) > MAX_CARDINAL_DIGITS:
            words = self.digits(integer)
        else:
            words = self.cardinal(int(integer))
        if fraction:
            words = f"{words} {self.point} {self.digits(fraction)}"
        return words

    def negative(self, words: str) -> str:
        return f"{self.minus} {words}"

    # ------------------------------------------------------------------ CLDR units and currencies
    def unit(self, words: str, value: Decimal, unit_ids: tuple[str, ...], symbol: str) -> str:
        """'<words> <unit name>' in CLDR's long form for ``value`` (plural, word order); the first
        unit id with a name in this language's script wins; none -> the symbol as written."""
        for unit_id in unit_ids:
            pattern = self._unit_pattern(unit_id, value)
            if pattern is not None:
                return _clean(pattern.replace("{0}", f" {words} "))
        return f"{words} {symbol}"

    def _unit_pattern(self, unit_id: str, value: Decimal) -> str | None:
        try:
            text = format_unit(value, unit_id, length="long", locale=self.locale)
        except UnknownUnitError:
            return None
        shown = format_decimal(value, locale=self.locale)  # how format_unit wrote the number
        if shown in text:
            pattern = text.replace(shown, "{0}", 1)
            if self.speakable(pattern.replace("{0}", "")):
                return pattern
        name = get_unit_name(unit_id, length="long", locale=self.locale)
        if name and self.speakable(name):  # e.g. ml has "{0} g" for grams but names it ഗ്രാം
            return "{0} " + name
        return None

    def currency(self, words: str, value: Decimal, code: str, scale: str | None = None) -> str | None:
        """'<words> [scale] <currency name>' with CLDR's plural name and pattern; None when the
        locale has no name in its script for the currency."""
        count = value if scale is None else Decimal(_CRORE)  # "5 crore rupees": plural count
        name = get_currency_name(code, count=count, locale=self.locale)
        if not self.speakable(name):
            return None
        pattern = get_currency_unit_pattern(code, count=count, locale=self.locale)
        amount = words if scale is None else f"{words} {scale}"
        return _clean(pattern.replace("{0}", f" {amount} ").replace("{1}", f" {name} "))

    def scale_words(self) -> set[str]:
        """Words for thousand / lakh / crore / million ... that may follow an amount ("₹5 crore"):
        CLDR's long compact number formats of this locale and of English, and the library's own
        words for 10^3, 10^5 and 10^7."""
        words: set[str] = set()
        for loc in {self.locale, Locale.parse("en_IN"), Locale.parse("en")}:
            for by_plural in loc.compact_decimal_formats.get("long", {}).values():
                for pattern in by_plural.values():
                    words.update(w for w in _clean(str(pattern.pattern).replace("0", " ")).split() if w)
        two = _clean(num2words("2", lang=self.lang))
        for power in (3, 5, 7):
            spoken = _clean(num2words(str(2 * 10**power), lang=self.lang))
            if spoken.startswith(two + " "):
                words.update(spoken[len(two) + 1 :].split())
        return {w.strip("'") for w in words if any(ch.isalpha() for ch in w)}

    # ------------------------------------------------------------------ dates and times
    def date(self, day: datetime.date) -> str:
        """CLDR long date (month name, the locale's order of day, month, year), numbers as words."""
        text = format_date(day, format="long", locale=self.locale)
        return _clean(_ASCII_DIGITS.sub(lambda m: f" {self.cardinal(int(m.group()))} ", to_ascii(text)))

    def time(self, hours: int, minutes: int, seconds: int | None = None) -> str:
        """hh:mm[:ss] read as a clock is read aloud: '10:30' -> 'ten thirty', '10:05' -> 'ten zero
        five', '10:00' -> 'ten' (so "10:30 बजे" becomes "दस तीस बजे")."""
        rest = [minutes] if seconds is None else [minutes, seconds]
        if rest == [0]:
            rest = []
        parts = [self.cardinal(hours)]
        parts += [self.cardinal(v) if v >= 10 else self.digits(f"{v:02d}") for v in rest]
        return " ".join(parts)

    # ------------------------------------------------------------------ helpers
    def speakable(self, text: str) -> bool:
        """True when ``text`` has a letter of this language's script."""
        lo, hi = SCRIPT_BLOCKS[self.lang]
        return any(lo <= ord(ch) <= hi and ch.isalpha() for ch in text)


def to_ascii(text: str) -> str:
    """Decimal digits of any script -> ASCII digits (other characters unchanged)."""
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)
