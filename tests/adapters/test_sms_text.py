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


@pytest.mark.parametrize("dlr", [True, False])
def test_the_sendsms_query_is_urlencode_of_its_parameters_byte_for_byte(dlr: bool) -> None:
    """``sendsms_query`` builds the request from parts encoded once; what smsbox receives must be what
    ``urlencode`` made of the parameters (the DLR URL inside quoted twice), for any text, number,
    Message-ID and attribution."""
    import random
    from urllib.parse import urlencode

    from shopkeeper.adapters.sms import SmsAdapter
    from shopkeeper.adapters.sms.adapter import Prepared
    from shopkeeper.adapters.sms.text import KANNEL_CODING
    from shopkeeper.outbox import Message

    class Hub:
        mode = "in-process"

    rnd = random.Random(7)
    alphabet = "aZ09 &=?%+/#:;<>@\"'~._-[]{}é€ßПр🙂\n\t"
    for i in range(300):
        junk = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        cfg = SmsConfig(username=f"u s&{junk[:3]}", password=f"p%{junk[-4:]}", default_sender="ShopCo",
                        dlr_mask=27 if dlr else 0, http_listen="127.0.0.1:8088",
                        public_url=f"http://sms.example/{junk[:5]}", token=f"t{i}")
        a = SmsAdapter(cfg, Hub())
        payload = {k: v for k, v in (("campaign", junk[:8]), ("run", f"r {i}"), ("message", junk[8:12]))
                   if rnd.random() < .7}
        msg = Message(id=f"i{i}{junk[:4]}", customer_id=f"c{i}", channel="sms", template="", payload=payload)
        mid = f"<sk.{msg.id}.{msg.customer_id}.{i:012x}@sms.shopkeeper>"
        text = junk or "hello"
        p = Prepared(f"+4474{i:08d}", f"Shop {junk[:2]}", text, encode_info(text))
        params = {"username": cfg.username, "password": cfg.password, "from": p.sender, "to": p.to, "text": p.text,
                  "charset": "UTF-8", "coding": str(KANNEL_CODING[p.encoded.encoding])}
        if dlr:
            params["dlr-mask"] = "27"
            params["dlr-url"] = a.dlr_url(msg, mid, p.to)
        assert a.sendsms_query(msg, mid, p) == urlencode(params), (i, junk)


def test_the_plain_ascii_shortcut_sizes_every_text_as_the_codec_does() -> None:
    """``encode_info`` sizes a plain ASCII text without the gsm0338 codec: for every ASCII character and
    random mixes (escape-table and non-GSM characters among them) it must agree with the codec."""
    import random

    from shopkeeper.adapters.sms import text as sms_text

    def by_codec(t: str) -> int:
        try:
            return len(t.encode("gsm03.38"))
        except UnicodeEncodeError:
            return -1

    rnd = random.Random(3)
    texts = [chr(c) for c in range(128)] + ["".join(rnd.choice([chr(c) for c in range(128)] + ["é", "€"])
                                                    for _ in range(rnd.randint(1, 400))) for _ in range(500)]
    for t in texts:
        plain = sms_text._PLAIN.fullmatch(t) is not None
        assert plain == (by_codec(t) == len(t) and t.isascii()), repr(t)
        enc = encode_info(t)
        if by_codec(t) >= 0:
            assert (enc.encoding, enc.units) == (GSM7, by_codec(t)), repr(t)
        else:
            assert enc.encoding == UCS2, repr(t)


def test_a_report_riding_with_a_mark_that_never_comes_is_withdrawn_after_dlr_hold() -> None:
    """``_ride``: a report waiting to join its send's sent mark leaves the hold after ``dlr_hold`` and is
    recorded alone (None); one handed over in time gets the mark's result and is not withdrawn later."""
    import asyncio

    from shopkeeper.adapters.sms import SmsAdapter
    from shopkeeper.adapters.sms.reports import _Hold

    class Hub:
        mode = "in-process"

    a = SmsAdapter(SmsConfig(default_sender="S", dlr_hold=0.05, http_listen=None), Hub())

    async def run() -> None:
        loop = asyncio.get_running_loop()
        hold = _Hold(loop.create_future())
        assert await a._ride(hold, {"type": "sms_delivered"}) is None  # no mark: withdrawn
        assert hold.riders == []
        hold = _Hold(loop.create_future())
        task = asyncio.ensure_future(a._ride(hold, {"type": "sms_delivered"}))
        while not hold.riders:
            await asyncio.sleep(0)
        riders, hold.riders = hold.riders, []  # what _mark_sent does: take them, hand them over
        riders[0][1].set_result({"status": "applied"})
        assert await task == {"status": "applied"}
        hold.riders.append(({"type": "other"}, loop.create_future()))  # a later rider the timer must not touch
        await asyncio.wait_for(asyncio.ensure_future(a._ride(_Hold(loop.create_future()), {})), 1)
        assert len(hold.riders) == 1 and not hold.riders[0][1].done()

    asyncio.run(run())
