"""What an SMS is before it is sent: the number in E.164, the sender for its country, the
encoding and the number of segments it will cost.

Computed here, before Kannel sees the message, so that a message that cannot be delivered
(an invalid or fixed-line number, no sender allowed for the country, a text too long) ends
``failed`` with the reason instead of being retried, and so that the encoding and segment
count (what the operator bills) are recorded with the send.

* **Numbers** are parsed and validated with ``phonenumbers`` (Google's libphonenumber
  metadata): the hub already stores phone identities in E.164, but "possible" is not
  "valid" — an unassigned range or a fixed line gets a clear error here.
* **Encoding**: GSM 03.38's 7-bit alphabet when every character is in it (the ``gsm0338``
  codec; characters of the extension table such as ``€ [ ] { }`` take two septets), else
  UCS-2 (UTF-16 code units; a character outside the BMP such as an emoji takes two).
* **Segments**: one message holds 160 septets (GSM-7) or 70 units (UCS-2); a longer text is
  sent concatenated, each part losing 6 octets to its UDH header: 153 septets or 67 units
  per part. An escape sequence or a surrogate pair is never split across parts, as
  handsets require, so the count is made by packing, not by dividing.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import gsm0338  # noqa: F401 - registers the "gsm03.38" codec

from ..delivery import PermanentFailure

GSM7, UCS2 = "gsm7", "ucs2"
#: Kannel's ``coding`` parameter of ``sendsms`` for each encoding (0 = 7 bits, 2 = UCS-2)
KANNEL_CODING = {GSM7: 0, UCS2: 2}
SINGLE = {GSM7: 160, UCS2: 70}
PART = {GSM7: 153, UCS2: 67}


class Undeliverable(PermanentFailure):
    """The message cannot be sent to this number at all: the intent fails, not retried, and
    the number is marked undeliverable on SMS."""


@dataclasses.dataclass(frozen=True)
class Encoded:
    """How a text goes over the air."""

    encoding: str  # gsm7 | ucs2
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def _units(text: str) -> tuple[str, list[int]]:
    """(encoding, size of each character in septets or UTF-16 units)."""
    try:
        return GSM7, [len(ch.encode("gsm03.38")) for ch in text]
    except UnicodeEncodeError:
        return UCS2, [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _one_septet_ascii() -> re.Pattern[str]:
    """A pattern of the texts made of ASCII characters that GSM-7's basic table holds (one septet each),
    taken from the codec itself, not written out by hand."""
    chars = []
    for code in range(128):
        try:
            if len(chr(code).encode("gsm03.38")) == 1:
                chars.append(re.escape(chr(code)))
        except UnicodeEncodeError:
            pass
    return re.compile(f"[{''.join(chars)}]*")


#: most texts are plain ASCII of GSM-7's basic table: one regex match says so and sizes them, where the
#: gsm0338 codec (pure Python, a call per character) took ~10 µs of the delivery loop per SMS
_PLAIN = _one_septet_ascii()


def encode_info(text: str) -> Encoded:
    """The encoding, size and segment count of ``text`` (see the module docstring)."""
    if _PLAIN.fullmatch(text):
        total = len(text)
    else:
        try:  # most texts fit one segment: one encode of the whole text says so (per-character
            total = len(text.encode("gsm03.38"))  # sizes, ~1 µs each, only for the packing below)
        except UnicodeEncodeError:
            total = -1
    if 0 <= total <= SINGLE[GSM7]:
        return Encoded(GSM7, total, 1)
    enc, sizes = _units(text)
    total = sum(sizes)
    if total <= SINGLE[enc]:
        return Encoded(enc, total, 1)
    per, parts, used = PART[enc], 1, 0
    for n in sizes:  # pack: an escape pair or a surrogate pair stays in one part
        if used + n > per:
            parts, used = parts + 1, 0
        used += n
    return Encoded(enc, total, parts)


def normalise(number: str, default_region: str = "US") -> tuple[str, str]:
    """(E.164 number, ISO region) of ``number``, or :class:`Undeliverable` saying why."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, default_region)
    except phonenumbers.NumberParseException as exc:
        raise Undeliverable(f"{number!r} is not a phone number ({exc})") from None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(parsed)
    # number_type is UNKNOWN exactly when is_valid_number is false (both match the number against
    # its region's ranges): one match instead of two (~20% of this function, once per SMS)
    kind = phonenumbers.number_type(parsed)
    if not region or kind == phonenumbers.PhoneNumberType.UNKNOWN:
        raise Undeliverable(f"{e164} is not a valid number (no such range is assigned)")
    if kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.PREMIUM_RATE,
                phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.SHARED_COST):
        name = {v: k for k, v in vars(phonenumbers.PhoneNumberType).items() if isinstance(v, int)}.get(kind, kind)
        raise Undeliverable(f"{e164} is a {str(name).lower().replace('_', '-')} number: it cannot receive SMS")
    return e164, region


def pick_sender(number: str, region: str, senders: dict[str, Any], default: str | None) -> str:
    """The sender id or number for ``number``: the longest matching ``+prefix`` rule, else
    the rule of its ISO ``region`` (``GB``, ``DE``…), else ``default``. A rule (or default)
    of ``null`` means "we do not send there": :class:`Undeliverable`."""
    best: tuple[int, Any] | None = None
    for key, sender in senders.items():
        if key.startswith("+") and number.startswith(key) and (best is None or len(key) > best[0]):
            best = (len(key), sender)
    if best is None and region and region.upper() in {k.upper() for k in senders}:
        best = (0, next(v for k, v in senders.items() if k.upper() == region.upper()))
    sender = best[1] if best is not None else default
    if not sender:
        raise Undeliverable(f"no sender is configured for {number} ({region or 'unknown country'}): "
                            "add a rule under adapters.sms.senders")
    return str(sender)


__all__ = ["Encoded", "Undeliverable", "encode_info", "normalise", "pick_sender", "GSM7", "UCS2", "KANNEL_CODING"]
