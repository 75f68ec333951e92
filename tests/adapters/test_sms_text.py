"""What an SMS is before it is sent: encoding, segments, number and sender (no Kannel needed)."""

from __future__ import annotations

import pytest

from shopkeeper.adapters.base import AdapterConfigError, validate_config
from shopkeeper.adapters.sms import SmsConfig
from shopkeeper.adapters.sms.text import GSM7, UCS2, Undeliverable, encode_info, normalise, pick_sender


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("Hello", GSM7, 5, 1),
    ("x" * 160, GSM7, 160, 1),
    ("x" * 161, GSM7, 161, 2),  # concatenated: 153 septets a part
    ("x" * 306, GSM7, 306, 2),
    ("x" * 307, GSM7, 307, 3),
    ("€" * 80, GSM7, 160, 1),  # the extension table: two septets each
    ("€" * 81, GSM7, 162, 2),
    ("x" * 152 + "€" + "x" * 152, GSM7, 306, 3),  # an escape pair is never split across parts: 152 | 153 | 1
    ("Café à Zürich", GSM7, 13, 1),  # é à ü are in the GSM alphabet
    ("Привет", UCS2, 6, 1),
    ("ç" + "x" * 69, UCS2, 70, 1),  # lower-case ç is not GSM-7: the whole text goes UCS-2
    ("ç" + "x" * 70, UCS2, 71, 2),
    ("Привет" * 23, UCS2, 138, 3),  # 67 units a part
    ("🙂" * 35, UCS2, 70, 1),  # outside the BMP: a surrogate pair, two units each
    ("x" * 66 + "🙂" + "x", UCS2, 69, 1),
    ("x" * 66 + "🙂" * 2, UCS2, 70, 1),
    ("x" * 66 + "🙂" * 3, UCS2, 72, 2),
    ("x" * 66 + "🙂" + "x" * 66, UCS2, 134, 3),  # a surrogate pair is never split: 66 | 67 | 1
])
def test_encoding_and_segments(text: str, encoding: str, units: int, segments: int) -> None:
    got = encode_info(text)
    assert (got.encoding, got.units, got.segments) == (encoding, units, segments)


def test_normalise_to_e164_and_region() -> None:
    assert normalise("+44 7400 123456") == ("+447400123456", "GB")
    assert normalise("(202) 555-0123", "US")[0] == "+12025550123"
    assert normalise("0170 1234567", "DE") == ("+491701234567", "DE")


@pytest.mark.parametrize(("number", "why"), [
    ("not a number", "not a phone number"),
    ("+44 7700 900123", "not a valid number"),  # Ofcom's range for drama: possible, never assigned
    ("+49 30 1234567", "fixed-line"),
])
def test_undeliverable_numbers_say_why(number: str, why: str) -> None:
    with pytest.raises(Undeliverable, match=why):
        normalise(number)


def test_sender_rules_longest_prefix_then_country_then_default() -> None:
    rules = {"+44": "ShopUK", "+447400": "ShopTest", "DE": "Shop", "+1": None}
    assert pick_sender("+447400123456", "GB", rules, "Default") == "ShopTest"
    assert pick_sender("+447500123456", "GB", rules, "Default") == "ShopUK"
    assert pick_sender("+491701234567", "DE", rules, "Default") == "Shop"
    assert pick_sender("+33612345678", "FR", rules, "Default") == "Default"
    with pytest.raises(Undeliverable, match=r"\+12025550123 \(US\)"):
        pick_sender("+12025550123", "US", rules, "Default")  # null: we do not send to +1
    with pytest.raises(Undeliverable, match="no sender"):
        pick_sender("+33612345678", "FR", rules, None)


@pytest.mark.parametrize(("raw", "field"), [
    ({"senders": {"UK1": "x"}}, "senders"),
    ({"sendsms_url": "localhost:13013"}, "sendsms_url"),
    ({"dlr_mask": 64}, "dlr_mask"),
    ({"max_segments": 0}, "max_segments"),
    ({"partition": "2/2"}, "partition"),
    ({"partition": "half"}, "partition"),
])
def test_config_errors_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(AdapterConfigError, match=field):
        validate_config("sms", SmsConfig, raw)


def test_the_names_of_the_adapter_module_before_its_split_still_import_and_unpickle() -> None:
    """``adapters/sms/adapter.py`` was split by job (config, reports, inbound): what users imported from it,
    and a pickled ``SmsConfig`` naming it, still work."""
    import pickle

    from shopkeeper.adapters.sms import adapter as old

    for name in ("SmsAdapter", "SmsConfig", "Prepared", "STOP_WORDS", "HELP_WORDS", "TEMPLATES", "ATTRIBUTION",
                 "builtin_template", "template_names"):
        assert getattr(old, name) is not None, name
    assert "summer_sale_sms" in old.template_names() and old.builtin_template("summer_sale_sms")
    cfg = SmsConfig(default_sender="ShopCo", partition="1/2")
    data = pickle.dumps(cfg, 0).replace(f"{SmsConfig.__module__}\n".encode(), b"shopkeeper.adapters.sms.adapter\n")
    assert b"shopkeeper.adapters.sms.adapter\nSmsConfig" in data
    assert pickle.loads(data) == cfg
