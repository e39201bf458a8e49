"""Indic text normalisation (frontend/normalize.py): every IndicF5 language, checked against the
libraries the words come from (indic-numtowords for numbers, CLDR through babel for names), never
against strings copied from our own output."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest
from babel.dates import format_date
from babel.numbers import get_currency_name
from babel.units import format_unit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from indic_numtowords import num2words

import indicf5_fast
from indicf5_fast.bench.stress.texts import load_texts
from indicf5_fast.errors import InputError
from indicf5_fast.frontend.normalize import check_language, normalize_text
from indicf5_fast.frontend.numwords import _MINUS_POINT, LOCALES

INDIC = ("as", "bn", "gu", "hi", "kn", "ml", "mr", "or", "pa", "ta", "te")
# one ordinary word of each language, written in its script (context around the numbers)
WORD = {
    "as": "আজি",
    "bn": "আজ",
    "gu": "આજે",
    "hi": "आज",
    "kn": "ಇಂದು",
    "ml": "ഇന്ന്",
    "mr": "आज",
    "or": "ଆଜି",
    "pa": "ਅੱਜ",
    "ta": "இன்று",
    "te": "ఈరోజు",
    "en": "today",
}
# the digit zero of each script (Devanagari ... Malayalam); Assamese shares the Bengali digits
ZERO = {"as": 0x9E6, "bn": 0x9E6, "gu": 0xAE6, "hi": 0x966, "kn": 0xCE6, "ml": 0xD66, "mr": 0x966}
ZERO |= {"or": 0xB66, "pa": 0xA66, "ta": 0xBE6, "te": 0xC66}
ANY_DIGIT = re.compile(r"\d")  # every script's decimal digits


def w(n: int, lang: str) -> str:
    """indic-numtowords' reading, spaces tidied (the library sometimes doubles them)."""
    return " ".join(num2words(str(n), lang=lang).split())


def native(n: int, lang: str) -> str:
    return "".join(chr(ZERO[lang] + int(d)) for d in str(n))


def norm(text: str, lang: str) -> str:
    out = normalize_text(text, lang)
    assert normalize_text(out, lang) == out, "not idempotent"
    return out


def inner(text: str, lang: str) -> str:
    """Normalise '<word> text <word>' and return what replaced `text` (the context is untouched)."""
    out = norm(f"{WORD[lang]} {text} {WORD[lang]}", lang)
    assert out.startswith(WORD[lang] + " ") and out.endswith(" " + WORD[lang]), out
    return out[len(WORD[lang]) + 1 : -len(WORD[lang]) - 1]


# ------------------------------------------------------------------------------ per language
@pytest.mark.parametrize("lang", INDIC + ("en",))
def test_integers_with_indian_and_western_grouping(lang):
    for written, n in (("7", 7), ("2025", 2025), ("1,23,456", 123456), ("123,456", 123456)):
        assert inner(written, lang) == w(n, lang)
    assert inner("12,34,56,789", lang) == w(123456789, lang)


@pytest.mark.parametrize("lang", INDIC)
def test_native_digits_of_each_script(lang):
    for n in (0, 7, 42, 123, 2500, 98765):
        assert inner(native(n, lang), lang) == w(n, lang)
    # with native digits and no letters at all, the digits name the script
    if lang not in ("mr", "as"):  # Devanagari / Bengali digits default to Hindi / Bengali
        assert norm(native(123, lang), None) == w(123, lang)


@pytest.mark.parametrize("lang", INDIC + ("en",))
def test_decimals_and_negatives(lang):
    minus, point = _MINUS_POINT[lang]  # CLDR rbnf words for "-x" and "x.x"
    assert inner("3.5", lang) == f"{w(3, lang)} {point} {w(5, lang)}"
    assert inner("0.25", lang) == f"{w(0, lang)} {point} {w(2, lang)} {w(5, lang)}"
    assert inner("-12", lang) == f"{minus} {w(12, lang)}"
    assert inner("1,234.05", lang) == f"{w(1234, lang)} {point} {w(0, lang)} {w(5, lang)}"


@pytest.mark.parametrize("lang", INDIC + ("en",))
def test_currency(lang):
    loc = LOCALES[lang]
    rupees = get_currency_name("INR", count=Decimal(2500), locale=loc)
    for written in ("₹2,500", "₹ 2500", "Rs. 2,500", "Rs.2500", "INR 2500", "2500 INR", "₹2,500/-"):
        assert inner(written, lang) == f"{w(2500, lang)} {rupees}", written
    dollars = get_currency_name("USD", count=Decimal(5), locale=loc)
    assert inner("$5", lang) == f"{w(5, lang)} {dollars}"


def cldr(value: int, unit: str, lang: str) -> str:
    """CLDR's long form of `value unit` (babel), the number replaced by indic-numtowords' words."""
    shown = format_unit(value, unit, length="long", locale=LOCALES[lang])
    return " ".join(shown.replace(str(value), f" {w(value, lang)} ").split())


@pytest.mark.parametrize("lang", INDIC + ("en",))
def test_percent_and_units_use_cldr_names(lang):
    assert inner("50%", lang) == cldr(50, "concentr-percent", lang)
    assert ("%" in inner("50%", lang)) == (lang == "ml")  # CLDR's Malayalam has no per-cent word
    assert inner("12 km", lang) == inner("12km", lang) == cldr(12, "length-kilometer", lang)
    assert inner("2 kg", lang) == cldr(2, "mass-kilogram", lang)
    assert inner("25°C", lang) == inner("25 °C", lang) == cldr(25, "temperature-celsius", lang)


@pytest.mark.parametrize("lang", INDIC + ("en",))
def test_date_and_time(lang):
    loc = LOCALES[lang]
    month = format_date(datetime.date(1947, 8, 15), "MMMM", locale=loc)  # CLDR's wide month name
    for written in ("15/08/1947", "15-08-1947", "15.08.1947", "1947-08-15"):
        spoken = inner(written, lang)
        assert month in spoken and w(15, lang) in spoken and w(1947, lang) in spoken, written
        assert not ANY_DIGIT.search(spoken)
    assert inner("10:30", lang) == f"{w(10, lang)} {w(30, lang)}"
    assert inner("7:05", lang) == f"{w(7, lang)} {w(0, lang)} {w(5, lang)}"
    assert inner("18:00", lang) == w(18, lang)


@pytest.mark.parametrize("lang", INDIC)
def test_no_digit_left_and_latin_words_untouched(lang):
    text = (
        f"{WORD[lang]} ₹2,500, 3.5 kg, 50%, 15/08/1947, 10:30, {native(123, lang)} "
        f"and iPhone {WORD[lang]} -7 12 km 25°C 1,23,456 OK"
    )
    out = norm(text, lang)
    assert not ANY_DIGIT.search(out), out
    for latin in ("and", "iPhone", "OK"):
        assert f" {latin} " in f" {out} "


@pytest.mark.parametrize("lang", INDIC)
def test_text_without_digits_is_unchanged(lang):
    for item in load_texts(langs=[lang]):  # the bundled sentences of every language
        assert normalize_text(item.text, lang) == item.text
        assert normalize_text(item.text) == item.text
    odd = f"{WORD[lang]} % ₹ $ Rs. km °C / - : , . — “quotes” ৰ"
    assert normalize_text(odd) == odd


# ------------------------------------------------------------------------------ language choice
def test_language_from_script_and_the_language_field():
    assert norm("आज 5 लोग", None) == f"आज {w(5, 'hi')} लोग"  # Devanagari -> Hindi
    assert norm("आज 5 लोग", "mr") == f"आज {w(5, 'mr')} लोग"  # ... unless told Marathi
    assert norm("আজ 5 জন", None) == f"আজ {w(5, 'bn')} জন"  # Bengali script -> Bengali
    assert norm("আজ 5 জন", "as") == f"আজ {w(5, 'as')} জন"  # ... unless told Assamese
    assert norm("ৰাজ্যত 5 জন", None) == f"ৰাজ্যত {w(5, 'as')} জন"  # ৰ: only Assamese writes it
    assert norm("ৰাজ্যত 5 জন", "bn") == f"ৰাজ্যত {w(5, 'bn')} জন"
    assert norm("I have 5 apples", None) == f"I have {w(5, 'en')} apples"  # Latin -> English
    assert norm("I have 5 apples", "hi") == f"I have {w(5, 'en')} apples"  # a Latin sentence stays English
    assert norm("5", None) == w(5, "en") and norm("5", "ta") == w(5, "ta")  # no letters: lang / English
    # the nearest letters decide, per number: Tamil then Telugu in one text
    assert norm("இன்று 5. ఈరోజు 6", None) == f"இன்று {w(5, 'ta')}. ఈరోజు {w(6, 'te')}"
    # a Hindi sentence with an English word: the number's own neighbours decide
    assert norm("मेरे पास 5 iPhone हैं", None) == f"मेरे पास {w(5, 'hi')} iPhone हैं"


def test_check_language():
    assert check_language(None) is None
    assert (
        check_language("hi-IN") == "hi" and check_language("MR") == "mr" and check_language("as_IN") == "as"
    )
    for bad in ("xx", "hindi", "", 5):
        with pytest.raises(InputError) as e:
            check_language(bad)
        assert e.value.param == "language"
    with pytest.raises(InputError):
        normalize_text("5", "zz")
    with pytest.raises(InputError):
        normalize_text(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ special forms
def test_large_amounts_are_composed_above_99_crore():
    crore = w(10**7, "hi").split()[-1]  # the library's word for crore
    assert norm("₹1,00,00,00,000", "hi").startswith(f"{w(100, 'hi')} {crore} ")
    assert norm("12,34,56,78,901", "hi") == f"{w(1234, 'hi')} {crore} {w(5678901, 'hi')}"
    assert norm("1,000,000,000", "en") == f"{w(100, 'en')} crore"


def test_phone_like_strings_are_read_digit_by_digit():
    digits = " ".join(w(int(d), "hi") for d in "9876543210")
    assert norm("फ़ोन 9876543210", None) == f"फ़ोन {digits}"
    assert norm("फ़ोन 98765 43210", None) == f"फ़ोन {digits}"
    assert norm("फ़ोन +91 98765 43210", None) == "फ़ोन + " + " ".join(
        w(int(d), "hi") for d in "91" + "9876543210"
    )
    assert norm("पिन 011", None) == "पिन " + " ".join(w(int(d), "hi") for d in "011")


def test_codes_ordinals_and_ranges():
    for text in ("4G और 5G", "MP3 फ़ाइल", "1st place", "2रा दिन", "v3.11 जारी", "H2O"):
        assert normalize_text(text) == text  # glued to letters: codes and ordinals stay as written
    assert norm("10-20 लोग", None) == f"{w(10, 'hi')}-{w(20, 'hi')} लोग"  # a range, not a minus
    assert norm("COVID-19 महामारी", None) == f"COVID-{w(19, 'en')} महामारी"
    assert norm("31/02/2020 तारीख", None).startswith(w(31, "hi") + "/")  # not a date: numbers each


def test_amount_scale_words_follow_the_number():
    rupees = get_currency_name("INR", count=Decimal(10**7), locale="hi")
    assert norm("मुझे ₹5 लाख मिले", None) == f"मुझे {w(5, 'hi')} लाख {rupees} मिले"
    rupees1 = get_currency_name("INR", count=Decimal(500), locale="hi")
    assert norm("Rs. 500 मात्र", None) == f"{w(500, 'hi')} {rupees1} मात्र"  # an ordinary word after


def test_exported_at_package_top_level():
    assert "normalize_text" in indicf5_fast.__all__
    assert indicf5_fast.normalize_text("₹5", "hi") == normalize_text("₹5", "hi")


# ------------------------------------------------------------------------------ properties
_PIECES = st.one_of(
    st.text(max_size=6),
    st.sampled_from(
        list("0123456789०१२৩৪੫૬୭௮౯೦൧.,-−:/%₹$€£+ °")
        + ["Rs.", "INR", "km", "kg", "°C", "/-", "लाख", "crore"]
        + ["ৰ", "abc", "नमस्ते", "1,23,456", "15/08/1947", "10:30", "+91 98765 43210", "3.5", "x"]
    ),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_PIECES, max_size=10).map("".join), st.sampled_from((None, "en") + INDIC))
def test_never_raises_never_empties_and_is_idempotent(text, lang):
    out = normalize_text(text, lang)
    assert isinstance(out, str)
    assert out or not text
    assert normalize_text(out, lang) == out


# ------------------------------------------------------------------------------ request path
def test_engine_normalizes_request_text_and_reference_text(tiny_tts, demo_voice, demo):
    text = "आज ₹2,500 मिले"
    assert tiny_tts.make_request(text, voice=demo).text == normalize_text(text)
    assert tiny_tts.make_request("आज 5", voice=demo, normalize=False).text == "आज 5"
    assert tiny_tts.make_request("आज 5", voice=demo, language="mr").text == f"आज {w(5, 'mr')}"
    with pytest.raises(InputError) as e:
        tiny_tts.make_request("आज 5", voice=demo, language="xx")
    assert e.value.param == "language"
    wav, ref_text = demo_voice  # the reference's transcript is read the same way as its audio
    voice = tiny_tts.prepare_voice(str(wav), ref_text + " 25")
    assert voice.text.startswith(f"{ref_text} {w(25, 'hi')}")
    assert tiny_tts.prepare_voice(str(wav), ref_text + " 25", normalize=False).text.startswith(
        ref_text + " 25"
    )


def test_synthesis_equals_synthesis_of_the_normalized_text(tiny_tts, demo):
    text = "आज 5 लोग आए।"
    opts = {"voice": demo, "seed": 3, "nfe_step": 2}
    got = tiny_tts.synthesize(text, **opts)
    want = tiny_tts.synthesize(normalize_text(text), **opts, normalize=False)
    raw = tiny_tts.synthesize(text, **opts, normalize=False)
    assert got.shape == want.shape and (got == want).all()
    assert raw.shape != got.shape or not (raw == got).all()


def test_vocabulary_check_runs_on_the_normalized_text(tiny_tts, demo, monkeypatch):
    from indicf5_fast.frontend.text import Tokenizer

    letters = [chr(c) for c in range(0x905, 0x965)]  # Devanagari letters and signs, no digits
    monkeypatch.setattr(tiny_tts, "tokenizer", Tokenizer([" ", *letters]))
    assert tiny_tts.make_request("१२३", voice=demo).text == w(123, "hi")
    with pytest.raises(InputError, match="vocabulary"):
        tiny_tts.make_request("१२३", voice=demo, normalize=False)


def test_sample_mel_stays_raw(tiny_tts, demo, monkeypatch):
    seen = []
    encode = tiny_tts.tokenizer.encode
    monkeypatch.setattr(tiny_tts.tokenizer, "encode", lambda t: seen.append(t) or encode(t))
    tiny_tts.sample_mel(demo.mel.numpy(), demo.text + "₹5", demo.frames + 20, nfe_step=1)
    assert seen == [demo.text + "₹5"]  # upstream CFM.sample's tokens, untouched


def test_cli_normalize_prints_what_the_model_reads(capsys):
    from indicf5_fast.cli import main

    assert main(["normalize", "आज ₹2,500 मिले", "--lang", "hi"]) == 0
    assert capsys.readouterr().out == normalize_text("आज ₹2,500 मिले", "hi") + "\n"
    assert main(["normalize", "आज 5 लोग", "--lang", "mr"]) == 0
    assert capsys.readouterr().out.strip() == f"आज {w(5, 'mr')} लोग"
    assert main(["normalize", "आज 5", "--lang", "xx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unsupported language 'xx'") and err.count("\n") == 1


def test_cli_synth_refuses_a_bad_language_before_loading(capsys, tmp_path):
    from indicf5_fast.cli import main

    argv = ["synth", "--model", str(tmp_path / "no-model"), "--text", "5", "--ref-audio", "x.wav"]
    argv += ["--ref-text", "x", "--out", str(tmp_path / "o.wav"), "--lang", "klingon"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unsupported language") and err.count("\n") == 1


def test_triton_inputs_carry_language_and_normalize(tiny_tts, demo_voice, demo):
    import numpy as np

    from indicf5_fast.deploy.triton import tensors
    from indicf5_fast.frontend.audio import read_audio

    spec = {s.name: s for s in tensors.INPUTS}
    assert spec["language"].optional and spec["normalize"].optional
    assert spec["normalize"].config_dtype == "TYPE_BOOL" and spec["normalize"].triton_dtype == "BOOL"
    wav, ref_text = demo_voice
    wave, sr = read_audio(str(wav))
    arrays = tensors.encode_request(
        "आज 5 लोग",
        ref_audio=wave,
        ref_sample_rate=sr,
        ref_text=ref_text + " 7",
        language="mr",
        normalize=True,
    )
    assert arrays["normalize"].dtype == np.bool_ and arrays["normalize"].shape == (1, 1)
    (req,) = tensors.parse_items(tiny_tts, arrays, {})
    assert req.text == f"आज {w(5, 'mr')} लोग" and req.voice.text.startswith(f"{ref_text} {w(7, 'mr')}")
    (req,) = tensors.parse_items(
        tiny_tts, tensors.encode_request("आज 5", voice="demo", normalize=False), {"demo": demo}
    )
    assert req.text == "आज 5"
    (err,) = tensors.parse_items(
        tiny_tts, tensors.encode_request("आज 5", voice="demo", language="xx"), {"demo": demo}
    )
    assert isinstance(err, InputError) and err.param == "language"


def test_remote_engine_normalizes_before_sending(demo_voice):
    from indicf5_fast.config import EngineConfig
    from indicf5_fast.deploy.triton.remote import RemoteTTS

    remote = RemoteTTS(EngineConfig(triton_url="grpc://127.0.0.1:9"))  # nothing is sent here
    wav, ref_text = demo_voice
    voice = remote.prepare_voice(wav.read_bytes(), ref_text + " 7", language="mr")
    assert voice.text == f"{ref_text} {w(7, 'mr')}"
    req = remote.make_request("आज 5 लोग", voice=voice, language="mr")
    assert req.text == f"आज {w(5, 'mr')} लोग"
    assert req.item()["normalize"] is False  # Triton must not read the words a second time
    assert remote.make_request("आज 5", voice=voice, normalize=False).text == "आज 5"
