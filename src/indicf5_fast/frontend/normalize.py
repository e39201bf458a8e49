"""Indic text normalisation: numbers, amounts, dates and times written out as words.

IndicF5 reads characters and never learned digits well, so "₹2,500", "15/08/1947", "3.5 किलो",
"50%" or "१२३" must reach it as words, in the language of the sentence around them:

- integers with Indian or Western grouping (1,23,456 / 123,456), native digits of every Indic
  script, decimals (CLDR's decimal-point word), negatives (CLDR's minus word);
- percentages, currencies (₹ Rs. INR $ USD € £, "₹5 crore"), units (km cm mm m kg g mg l ml km/h
  °C °F °) with CLDR's names and plural forms;
- dates dd/mm/yyyy, dd-mm-yyyy, dd.mm.yyyy, yyyy-mm-dd (CLDR's long date: month name, the locale's
  order) and times hh:mm[:ss], read as a clock is read ("10:30 बजे" -> "दस तीस बजे");
- phone-like digit strings (a leading "+", a leading zero, 10 or more digits without grouping, or
  "98765 43210") read digit by digit.

Not touched: a number glued to letters ("4G", "MP3", ordinals such as "1st" or "2रा": ordinals are
out of scope), every word, every symbol outside those patterns. Text without a digit is returned
unchanged (so parity with upstream holds), and ``normalize_text`` is idempotent.

Language: ``lang`` (ISO 639-1) when given picks between the languages of one script (hi / mr for
Devanagari, bn / as for Bengali); the script itself comes from the digits (native digits) or from
the nearest letters around each number; Latin letters around a number mean English; a text with
no letters uses ``lang`` (default English). Bengali-script text with ৰ or ৱ (letters only
Assamese uses) is read as Assamese unless ``lang`` says Bengali. Words come from indic-numtowords
and CLDR (see ``numwords.py``).
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from decimal import Decimal

from indicf5_fast.errors import InputError
from indicf5_fast.frontend.numwords import LANGUAGES, Speller, to_ascii

__all__ = ["LANGUAGES", "check_language", "normalize_text"]

# ASCII digits and those of the nine Indic scripts (Devanagari ... Malayalam); other scripts'
# digits are left alone.
_DR = (
    "0-9\u0966-\u096f\u09e6-\u09ef\u0a66-\u0a6f\u0ae6-\u0aef\u0b66-\u0b6f"
    "\u0be6-\u0bef\u0c66-\u0c6f\u0ce6-\u0cef\u0d66-\u0d6f"
)
_D = f"[{_DR}]"
_HAS_DIGIT = re.compile(_D)

# script blocks -> the languages written in it (default first)
_SCRIPTS: tuple[tuple[int, int, tuple[str, ...]], ...] = (
    (0x0900, 0x097F, ("hi", "mr")),
    (0x0980, 0x09FF, ("bn", "as")),
    (0x0A00, 0x0A7F, ("pa",)),
    (0x0A80, 0x0AFF, ("gu",)),
    (0x0B00, 0x0B7F, ("or",)),
    (0x0B80, 0x0BFF, ("ta",)),
    (0x0C00, 0x0C7F, ("te",)),
    (0x0C80, 0x0CFF, ("kn",)),
    (0x0D00, 0x0D7F, ("ml",)),
)
_LATIN = ("en",)
_ASSAMESE_ONLY = ("\u09f0", "\u09f1")  # ৰ ৱ

_CURRENCIES = {
    "₹": "INR",
    "Rs": "INR",
    "Rs.": "INR",
    "INR": "INR",
    "$": "USD",
    "US$": "USD",
    "USD": "USD",
    "€": "EUR",
    "EUR": "EUR",
    "£": "GBP",
    "GBP": "GBP",
}
# written unit -> CLDR unit ids to try, in order (the first with a name in the language wins)
_UNITS: dict[str, tuple[str, ...]] = {
    "km/h": ("speed-kilometer-per-hour",),
    "kmph": ("speed-kilometer-per-hour",),
    "km": ("length-kilometer",),
    "Km": ("length-kilometer",),
    "KM": ("length-kilometer",),
    "cm": ("length-centimeter",),
    "mm": ("length-millimeter",),
    "m": ("length-meter",),
    "kg": ("mass-kilogram",),
    "Kg": ("mass-kilogram",),
    "KG": ("mass-kilogram",),
    "mg": ("mass-milligram",),
    "g": ("mass-gram",),
    "ml": ("volume-milliliter",),
    "mL": ("volume-milliliter",),
    "l": ("volume-liter",),
    "L": ("volume-liter",),
    "°C": ("temperature-celsius",),
    "° C": ("temperature-celsius",),
    "℃": ("temperature-celsius",),
    "°F": ("temperature-fahrenheit",),
    "° F": ("temperature-fahrenheit",),
    "℉": ("temperature-fahrenheit",),
    "°": ("temperature-generic", "angle-degree"),
}


def _alternation(words) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


# A "cluster" is digits joined by single . , : / - (1,23,456 / 3.5 / 15/08/1947 / 10:30 / 10-20).
# Every alternative below matches whole clusters only (_L, _R), so a cluster is either converted
# or left exactly as written; that is what makes normalize_text idempotent.
_C = ".,:/\\-"
_L = rf"(?<![{_DR}])(?<![{_DR}][{_C}])"
_R = rf"(?![{_C}]?{_D})"
_NUM = rf"(?:{_D}{{1,3}}(?:,{_D}{{2,3}})*,{_D}{{3}}(?!{_D})|{_D}+)(?:\.{_D}+)?"  # 1,23,456.78
_AMOUNT = rf"{_L}[-\u2212]?{_NUM}{_R}"
_WORD = r"[^\W\d_][^\s\d.,;:!?।॥()\[\]{}\"'/\-]*"
_PATTERN = re.compile(
    "|".join(
        (
            rf"(?P<phone>\+{_D}(?:[ \-]?{_D}){{7,14}}{_R}|{_L}{_D}{{5}}[ \-]{_D}{{5}}{_R})",
            rf"(?P<date>{_L}(?P<dd>{_D}{{1,2}})(?P<sep>[/.\-])(?P<mo>{_D}{{1,2}})(?P=sep)(?P<yy>{_D}{{4}}){_R})",
            rf"(?P<iso>{_L}(?P<iy>{_D}{{4}})-(?P<im>{_D}{{2}})-(?P<id>{_D}{{2}}){_R})",
            rf"(?P<time>{_L}(?P<hh>{_D}{{1,2}}):(?P<mi>{_D}{{2}})(?::(?P<ss>{_D}{{2}}))?{_R})",
            rf"(?P<cur>(?P<cur_sym>₹|US\$|\$|€|£|\b(?:Rs\.?|INR|USD|EUR|GBP))[ \t]?(?P<cur_amt>{_AMOUNT})"
            rf"(?:[ \t]?/-)?(?:(?P<cur_sp>[ \t]+)(?P<cur_scale>{_WORD}))?)",
            rf"(?P<curs>(?P<curs_amt>{_AMOUNT})[ \t]?(?P<curs_sym>₹|(?:INR|USD|EUR|GBP)(?![^\W\d_])|Rs\.?(?![^\W\d_])))",
            rf"(?P<pct>(?P<pct_amt>{_AMOUNT})[ \t]?%)",
            rf"(?P<unit>(?P<unit_amt>{_AMOUNT})[ \t]?(?P<unit_sym>{_alternation(_UNITS)})(?![^\W_]))",
            rf"(?P<num>{_AMOUNT})",
            rf"(?P<clu>{_L}{_D}+(?:[{_C}]{_D}+)+)",  # anything else: each number in it on its own
        )
    )
)
_KINDS = ("phone", "date", "iso", "time", "cur", "curs", "pct", "unit", "num", "clu")


def check_language(lang: str | None) -> str | None:
    """None or an ISO 639-1 code of IndicF5's languages / English ("hi", "hi-IN", "HI" ...) -> the
    code; anything else is an InputError naming the supported codes."""
    if lang is None:
        return None
    if not isinstance(lang, str):
        raise InputError("language must be a string such as 'hi'", "language")
    code = lang.strip().replace("_", "-").split("-")[0].lower()
    if code not in LANGUAGES:
        raise InputError(
            f"unsupported language {lang!r} (expected one of {', '.join(LANGUAGES)})", "language"
        )
    return code


def normalize_text(text: str, lang: str | None = None) -> str:
    """Write numbers, amounts, percentages, units, dates and times out as words (see the module
    docstring). ``lang``: ISO 639-1 code (as bn gu hi kn ml mr or pa ta te en) or None to infer
    it from the script. Text without a digit is returned unchanged."""
    if not isinstance(text, str):
        raise InputError("text must be a string", "text")
    lang = check_language(lang)
    if not _HAS_DIGIT.search(text):
        return text
    return _Normalizer(text, lang).run()


class _Normalizer:
    """One call's state: the text, where the nearest letter of a known script is, the spellers."""

    def __init__(self, text: str, lang: str | None):
        self.text, self.lang = text, lang
        self.assamese = any(ch in text for ch in _ASSAMESE_ONLY)
        self.spellers: dict[str, Speller] = {}
        scripts = [_script_of(ch) for ch in text]
        n = len(text)
        # left[i]: last index < i with a known-script letter (-1); right[i]: first index >= i (n)
        self.scripts = scripts
        self.left = [-1] * (n + 1)
        for i in range(1, n + 1):
            self.left[i] = i - 1 if scripts[i - 1] is not None else self.left[i - 1]
        self.right = [n] * (n + 1)
        for i in range(n - 1, -1, -1):
            self.right[i] = i if scripts[i] is not None else self.right[i + 1]

    def run(self) -> str:
        return _PATTERN.sub(self._replace, self.text)

    # ------------------------------------------------------------------ per match
    def _replace(self, m: re.Match) -> str:
        kind = next(k for k in _KINDS if m.group(k) is not None)
        start, end = m.span()
        before = self.text[start - 1] if start else ""
        after = self.text[end] if end < len(self.text) else ""
        prefix = ""
        amount_key = {"cur": None, "curs": "curs_amt", "pct": "pct_amt", "unit": "unit_amt", "num": "num"}
        if kind in amount_key and amount_key[kind] and m.group()[0] in "-\u2212" and _is_wordish(before):
            prefix, start = m.group()[0], start + 1  # "COVID-19", "10-20": a hyphen, not a minus
            before = prefix
        if _is_letter(before) and kind != "cur":
            return m.group()  # glued to a word: "A4", "x-5"
        if m.group()[-1].isdecimal() and _is_letter(after):
            return m.group()  # "4G", "1st", "2रा": codes and ordinals stay as written
        lang = self._language(start, end, m.group())
        speller = self._speller(lang)
        if kind == "cur" and m.group("cur_scale") and m.group("cur_scale") not in speller.scale_words():
            # "Rs. 500 मात्र": the word after the amount is context, not part of it
            lang = self._language(start, m.start("cur_sp"), m.group())
            speller = self._speller(lang)
        try:
            words = self._words(kind, m, speller, bool(prefix))
        except Exception:  # a library quirk on an odd input must not fail a whole request
            words = None
        if not words:
            return m.group()
        if _is_letter(before):
            words = " " + words
        if _is_letter(after):
            words += " "
        return prefix + words

    def _words(self, kind: str, m: re.Match, sp: Speller, hyphen: bool) -> str | None:
        if kind == "phone":
            groups = re.split(r"[ \-]+", to_ascii(m.group("phone")).lstrip("+"))
            plus = "+ " if m.group("phone").startswith("+") else ""
            return plus + " ".join(sp.digits(g) for g in groups if g)
        if kind in ("date", "iso"):
            if kind == "date":
                d, mo, y = (int(to_ascii(m.group(k))) for k in ("dd", "mo", "yy"))
            else:
                y, mo, d = (int(to_ascii(m.group(k))) for k in ("iy", "im", "id"))
            try:
                day = datetime.date(y, mo, d)
            except ValueError:  # 31/02/2020: not a date, read the numbers one by one
                return self._each_number(m.group(), sp)
            return sp.date(day)
        if kind == "time":
            h, mi = int(to_ascii(m.group("hh"))), int(to_ascii(m.group("mi")))
            s = int(to_ascii(m.group("ss"))) if m.group("ss") else None
            if h > 23 or mi > 59 or (s is not None and s > 59):
                return self._each_number(m.group(), sp)
            return sp.time(h, mi, s)
        if kind == "clu":
            return self._each_number(m.group(), sp)
        if kind == "num":
            return self._plain(m.group()[1:] if hyphen else m.group(), sp)
        negative, integer, fraction, _ = _parse_amount(m.group(f"{kind}_amt"))
        words = sp.number(integer, fraction)
        if negative:
            words = sp.negative(words)
        value = Decimal(f"{integer}.{fraction or 0}")
        if kind == "pct":
            return sp.unit(words, value, ("concentr-percent",), "%")
        if kind == "unit":
            symbol = m.group("unit_sym")
            return sp.unit(words, value, _UNITS[symbol], symbol)
        symbol = m.group(f"{kind}_sym")
        scale = m.group("cur_scale") if kind == "cur" else None
        tail = ""
        if scale is not None and scale not in sp.scale_words():
            tail, scale = m.group("cur_sp") + scale, None  # not "lakh"/"crore"...: an ordinary word
        spoken = sp.currency(words, value, _CURRENCIES[symbol], scale)
        if spoken is None:  # no CLDR name in this language: keep the symbol as written
            spoken = f"{words} {scale} {symbol}" if scale else f"{words} {symbol}"
        return spoken + tail

    def _plain(self, raw: str, sp: Speller) -> str:
        """A number on its own: cardinal, or digit by digit when phone-like (a leading zero, or
        10 or more digits without grouping)."""
        negative, integer, fraction, grouped = _parse_amount(raw)
        phone_like = (
            not grouped
            and fraction is None
            and (len(integer) >= 10 or (len(integer) > 1 and integer[0] == "0"))
        )
        words = sp.number(integer, fraction, whole_digits=phone_like)
        return sp.negative(words) if negative else words

    def _each_number(self, cluster: str, sp: Speller) -> str:
        """'1.5-2.5', '31/02/2020', '1.2.3': every number in the cluster read on its own."""
        return _PIECE.sub(lambda x: self._plain(x.group(), sp), cluster)

    def _speller(self, lang: str) -> Speller:
        if lang not in self.spellers:
            self.spellers[lang] = Speller(lang)
        return self.spellers[lang]

    def _language(self, start: int, end: int, fragment: str) -> str:
        for ch in fragment:  # native digits name their script
            if ch.isdecimal() and not "0" <= ch <= "9":
                langs = _script_of_digit(ch)
                if langs:
                    return self._pick(langs)
        li, ri = self.left[start], self.right[end]
        if li < 0 and ri >= len(self.text):
            return self.lang or "en"
        if ri >= len(self.text) or (li >= 0 and start - li <= ri - end + 1):
            return self._pick(self.scripts[li])
        return self._pick(self.scripts[ri])

    def _pick(self, langs: tuple[str, ...]) -> str:
        if self.lang in langs:
            return self.lang
        if langs[0] == "bn" and self.assamese:
            return "as"
        return langs[0]


_PIECE = re.compile(_NUM)


def _parse_amount(raw: str) -> tuple[bool, str, str | None, bool]:
    """'-1,23,456.78' -> (negative, '123456', '78', grouped)."""
    negative = raw[:1] in ("-", "\u2212")
    body = to_ascii(raw[1:] if negative else raw)
    integer, _, fraction = body.partition(".")
    return negative, integer.replace(",", ""), fraction or None, "," in integer


def _script_of(ch: str) -> tuple[str, ...] | None:
    """Languages of the script of a letter / combining mark; None for anything else."""
    cat = unicodedata.category(ch)
    if cat[0] not in "LM":
        return None
    code = ord(ch)
    if code < 0x0250:
        return _LATIN if ch.isalpha() else None
    for lo, hi, langs in _SCRIPTS:
        if lo <= code <= hi:
            return langs
    return None


def _script_of_digit(ch: str) -> tuple[str, ...] | None:
    code = ord(ch)
    for lo, hi, langs in _SCRIPTS:
        if lo <= code <= hi:
            return langs
    return None


def _is_letter(ch: str) -> bool:
    return bool(ch) and unicodedata.category(ch)[0] in "LM"


def _is_wordish(ch: str) -> bool:
    return _is_letter(ch) or (bool(ch) and ch.isdecimal())
