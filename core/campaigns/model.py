"""Campaign definitions: ``rules/campaigns/*.yaml``, checked like rule files.

A file holds one campaign or a list under ``campaigns:`` (and optionally ``vocabulary:``, as a
rule file)::

    campaigns:
      - name: winter_sale
        priority: 10                      # higher wins when campaigns compete for the same cap
        audience:
          segment: repeat_buyers          # optional: members of a segment (rules/segments)
          conditions:                     # the rules' condition language (docs/rules.md), no event
            - customer.total_spend: {at_least: 50}
        schedule: {at: 2026-12-05T10:00:00Z}   # or {every: 7d} or {on_segment_entry: true}; none = manual
        messages:                         # fallback order; the customer's preferred channel first
          - {channel: email, template: winter_sale}
          - {channel: sms, text: "Hi {trait.first_name|there}: 20% off. STOP to opt out"}
          - {channel: web, placement: home_hero}
          - {channel: agent, queue: outbound_calls}
        offer: winback_20
        holdout: 10                       # percent kept back (the uplift's control group)
        start: 2026-12-01
        end: 2027-01-31

Why the rules' checker: the audience is a rule's ``conditions:`` list, compiled by the same
:class:`~shopkeeper.rules.checker.Checker` into the same engine-neutral tree and judged with the
same facts (:class:`~shopkeeper.rules.runtime.FactBuilder`), so a condition means one thing
wherever it is written. There is no event, so ``event.*`` and ``first`` are refused.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rules.actions import Vocabulary, template_paths
from ..rules.checker import Checker
from ..rules.loader import catalogue_ids
from ..rules.matching import All, Condition
from ..rules.model import HistorySpec, Rule
from ..rules.yamldoc import Diagnostic, Marks, _plain, did_you_mean, load_yaml, parse_duration, parse_time
from .rates import parse_rate as pacing_rate

CAMPAIGN_KEYS = {"name", "description", "priority", "enabled", "audience", "schedule", "messages", "offer",
                 "holdout", "start", "end", "purpose", "rate", "backlog"}
AUDIENCE_KEYS = {"segment", "conditions"}
SCHEDULE_KEYS = {"at", "every", "on_segment_entry"}
MESSAGE_KEYS = {"channel", "template", "text", "placement", "queue", "subject"}
#: what each kind of channel needs: a text channel renders ``text``, a placement channel names where
TEXT_CHANNELS = {"sms", "whatsapp"}
PLACEMENT_CHANNELS = {"web", "app"}
QUEUE_CHANNELS = {"agent", "phone_out"}
#: placeholders a campaign text may use: the customer, not an event
TEXT_ROOTS = {"customer", "fact", "score", "trait"}


@dataclass(frozen=True)
class MessageDef:
    """One channel's message. ``template`` names an adapter template (email and any adapter
    channel), ``text`` is rendered per customer (SMS), ``placement`` a web slot, ``queue`` an
    agents' call list."""

    channel: str
    template: str = ""
    text: str = ""
    placement: str = ""
    queue: str = ""
    subject: str = ""
    line: int = 0

    @property
    def key(self) -> str:
        """What identifies the message in responses and reports: channel and template/placement."""
        return f"{self.channel}:{self.template or self.placement or self.queue or 'text'}"


@dataclass(frozen=True)
class Schedule:
    kind: str = "manual"  # manual | once | recurring | segment_entry
    at: int | None = None
    every_us: int | None = None


@dataclass
class Campaign:
    name: str
    description: str = ""
    priority: int = 0
    enabled: bool = True
    segment: str = ""
    condition: Condition = field(default_factory=lambda: All(()))
    fields: set[str] = field(default_factory=set)
    numeric_fields: set[str] = field(default_factory=set)
    history: dict[str, HistorySpec] = field(default_factory=dict)
    messages: tuple[MessageDef, ...] = ()
    offer: str = ""
    holdout: float = 0.0
    start: int | None = None
    end: int | None = None
    purpose: str = "marketing"
    #: messages per second the run may hand to adapters: ``"*"`` for the whole campaign, else per channel
    rate: dict[str, float] = field(default_factory=dict)
    #: the most intents of a run written and not yet claimed by an adapter; the runner waits above it (0 = no bound)
    backlog: int = 0
    schedule: Schedule = field(default_factory=Schedule)
    file: str = ""
    line: int = 0
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """Content hash of the definition: a run records which version it planned."""
        raw = json.dumps(self.source, sort_keys=True, default=str).encode()
        return hashlib.sha256(raw).hexdigest()[:12]

    @property
    def channels(self) -> list[str]:
        return [m.channel for m in self.messages]

    def message(self, channel: str) -> MessageDef | None:
        return next((m for m in self.messages if m.channel == channel), None)

    def active_at(self, ts: int) -> bool:
        return self.enabled and (self.start is None or ts >= self.start) and (self.end is None or ts < self.end)


@dataclass
class CampaignSet:
    campaigns: dict[str, Campaign] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def by_priority(self) -> list[Campaign]:
        return sorted(self.campaigns.values(), key=lambda c: (-c.priority, c.name))


class CampaignError(ValueError):
    """A campaign that cannot be used; the message lists its problems as ``file:line:col``."""


def campaign_files(directory: Path) -> list[Path]:
    d = directory / "campaigns"
    if not d.is_dir():
        return []
    return sorted(p for p in [*d.glob("*.yaml"), *d.glob("*.yml")]
                  if not p.name.startswith((".", "_")) and not p.name.endswith((".test.yaml", ".test.yml")))


class CampaignChecker:
    """Checks campaign documents; reuses the rules' :class:`Checker` for conditions and templates."""

    def __init__(self, *, vocabulary: Vocabulary | None = None, event_types: Any = None,
                 segments: set[str] | None = None, offers: set[str] | None = None,
                 templates: dict[str, set[str]] | None = None) -> None:
        kw = {"event_types": event_types} if event_types is not None else {}
        self.rules = Checker(vocabulary or Vocabulary.builtin(), offers=offers, templates=templates, **kw)
        if segments:
            self.rules.segments |= segments
        self.known_segments = segments  # None: not known, not cross-checked
        self.offers = offers
        self.templates = templates or {}

    @property
    def diags(self) -> list[Diagnostic]:
        return self.rules.diags

    def err(self, marks: Marks, path: tuple, msg: str, *, key: bool = False) -> None:
        self.rules.err(marks, path, msg, key=key)

    def warn(self, marks: Marks, path: tuple, msg: str, *, key: bool = False) -> None:
        self.rules.warn(marks, path, msg, key=key)

    def check_document(self, doc: Any, marks: Marks) -> list[Campaign]:
        if doc is None:
            return []
        if isinstance(doc, dict) and "campaigns" not in doc and "name" in doc:
            items, base, single = [doc], (), True
        elif isinstance(doc, dict):
            for k in sorted(set(doc) - {"campaigns", "vocabulary"}, key=str):
                self.err(marks, (k,), f"unknown top-level key {k!r}{did_you_mean(str(k), ['campaigns'])} "
                         "(a campaign file holds `campaigns:` and optionally `vocabulary:`)", key=True)
            items, base, single = doc.get("campaigns") or [], ("campaigns",), False
            if not isinstance(items, list):
                self.err(marks, base, "`campaigns:` must be a list of campaigns")
                return []
            self.rules.collect(doc)
        else:
            self.err(marks, (), "a campaign file must be a mapping with `campaigns:` (a list of campaigns)")
            return []
        out = []
        for i, raw in enumerate(items):
            c = self.check_campaign(raw, marks, base if single else base + (i,))
            if c is not None:
                out.append(c)
        return out

    def _errors(self) -> int:
        return sum(1 for d in self.diags if d.severity == "error")

    def check_campaign(self, raw: Any, marks: Marks, path: tuple) -> Campaign | None:
        if not isinstance(raw, dict):
            self.err(marks, path, "a campaign must be a mapping with name, audience and messages")
            return None
        before = self._errors()
        for k in raw:
            if k not in CAMPAIGN_KEYS:
                self.err(marks, path + (k,), f"unknown campaign key {k!r}{did_you_mean(str(k), CAMPAIGN_KEYS)}",
                         key=True)
        name = raw.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_.-]{0,63}", name or ""):
            self.err(marks, path + ("name",) if "name" in raw else path,
                     "every campaign needs a `name`: lower-case letters, digits, _ . - (starting with a letter)")
            name = f"<campaign at line {marks.at(path)[0]}>"
        c = Campaign(name=name, file=marks.file, line=marks.at(path)[0], source=_plain(raw))
        c.description = str(raw.get("description", ""))
        prio = raw.get("priority", 0)
        if isinstance(prio, bool) or not isinstance(prio, int):
            self.err(marks, path + ("priority",), f"`priority` must be a whole number, not {prio!r}")
        else:
            c.priority = prio
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            self.err(marks, path + ("enabled",), f"`enabled` must be true or false, not {enabled!r}")
        else:
            c.enabled = enabled
        purpose = raw.get("purpose", "marketing")
        if not isinstance(purpose, str) or not purpose:
            self.err(marks, path + ("purpose",), "`purpose` must be text (marketing, service...)")
        else:
            c.purpose = purpose
        hold = raw.get("holdout", 0)
        if isinstance(hold, bool) or not isinstance(hold, (int, float)) or not 0 <= hold < 100:
            self.err(marks, path + ("holdout",), f"`holdout` must be a percentage from 0 to 99, not {hold!r}")
        else:
            c.holdout = float(hold)
        rate = raw.get("rate")
        if rate is not None:
            items = rate.items() if isinstance(rate, dict) else [("*", rate)]
            for ch, v in items:
                try:
                    c.rate[str(ch)] = pacing_rate(v)
                except ValueError as exc:
                    self.err(marks, path + (("rate", ch) if isinstance(rate, dict) else ("rate",)), f"`rate`: {exc}")
        backlog = raw.get("backlog", 0)
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0:
            self.err(marks, path + ("backlog",), f"`backlog` must be a whole number of intents >= 0, not {backlog!r}")
        else:
            c.backlog = backlog
        for k in ("start", "end"):
            if raw.get(k) is not None:
                try:
                    setattr(c, k, parse_time(raw[k]))
                except ValueError as exc:
                    self.err(marks, path + (k,), f"`{k}`: {exc}")
        if c.start is not None and c.end is not None and c.start >= c.end:
            self.err(marks, path + ("end",), "`end` is not after `start`: the campaign could never run")
        offer = raw.get("offer")
        if offer is not None:
            if not isinstance(offer, str):
                self.err(marks, path + ("offer",), "`offer` must be an offer id (text)")
            else:
                c.offer = offer
                if self.offers is not None and offer not in self.offers:
                    self.warn(marks, path + ("offer",), f"offer {offer!r} is not in the offer catalogue (offers/)"
                              f"{did_you_mean(offer, self.offers)}")
        self._audience(raw.get("audience"), marks, path, c)
        self._schedule(raw.get("schedule"), marks, path, c)
        self._messages(raw.get("messages"), marks, path, c)
        for ch in set(c.rate) - {"*"} - set(c.channels) if c.messages else ():
            self.err(marks, path + ("rate", ch), f"`rate`: the campaign has no {ch!r} message "
                                                 f"(it has: {', '.join(c.channels)})")
        return c if self._errors() == before else None

    def _audience(self, aud: Any, marks: Marks, path: tuple, c: Campaign) -> None:
        ap = path + ("audience",)
        if aud is None:
            self.err(marks, path, "every campaign needs `audience:` (a segment, conditions, or both)")
            return
        if not isinstance(aud, dict):
            self.err(marks, ap, "`audience` takes `segment:` and/or `conditions:`")
            return
        for k in aud:
            if k not in AUDIENCE_KEYS:
                self.err(marks, ap + (k,), f"unknown audience key {k!r}{did_you_mean(str(k), AUDIENCE_KEYS)}",
                         key=True)
        seg = aud.get("segment")
        if seg is not None:
            if not isinstance(seg, str):
                self.err(marks, ap + ("segment",), "`segment` must be a segment name")
            else:
                c.segment = seg
                known = self.known_segments
                if known is not None and seg not in known and seg not in self.rules.segments:
                    self.warn(marks, ap + ("segment",), f"unknown segment {seg!r}{did_you_mean(seg, known)} "
                              "(segments/ defines none such and no rule sets it)")
        conds = aud.get("conditions")
        if conds is None:
            return
        if not isinstance(conds, list):
            self.err(marks, ap + ("conditions",), "`conditions` must be a list (all must hold)")
            return
        holder = Rule(name=c.name, description="", priority=0, enabled=True, events=("*",), condition=All(()),
                      actions=[], file=marks.file, line=c.line)
        items = []
        for i, cond in enumerate(conds):
            p = ap + ("conditions", i)
            bad = _eventful(cond)
            if bad:
                self.err(marks, p + (bad,), f"a campaign audience has no event: `{bad}` cannot be used "
                         "(use customer., fact., score., segment., tag., trait., identity., consent. or history)",
                         key=True)
                continue
            got = self.rules._check_condition(cond, marks, p, holder)
            if got is not None:
                items.append(got)
        c.condition = All(tuple(items))
        c.fields, c.numeric_fields, c.history = holder.fields, holder.numeric_fields, holder.history

    def _schedule(self, sch: Any, marks: Marks, path: tuple, c: Campaign) -> None:
        sp = path + ("schedule",)
        if sch is None:
            return
        if not isinstance(sch, dict) or len(sch) != 1:
            self.err(marks, sp, "`schedule` takes one of {at: TIME}, {every: 7d} or {on_segment_entry: true}")
            return
        (k, v), = sch.items()
        if k not in SCHEDULE_KEYS:
            self.err(marks, sp + (k,), f"unknown schedule {k!r}{did_you_mean(str(k), SCHEDULE_KEYS)}", key=True)
            return
        try:
            if k == "at":
                c.schedule = Schedule("once", at=parse_time(v))
            elif k == "every":
                every = parse_duration(v)
                if every < 3600 * 1_000_000:
                    raise ValueError("must be at least 1h")
                c.schedule = Schedule("recurring", every_us=every)
            else:
                if v is not True:
                    raise ValueError("must be true")
                if not c.segment:
                    raise ValueError("needs `audience: segment:` (entering that segment starts the send)")
                c.schedule = Schedule("segment_entry")
        except ValueError as exc:
            self.err(marks, sp + (k,), f"`{k}`: {exc}")

    def _messages(self, msgs: Any, marks: Marks, path: tuple, c: Campaign) -> None:
        mp = path + ("messages",)
        if not isinstance(msgs, list) or not msgs:
            self.err(marks, mp if "messages" in c.source else path,
                     "every campaign needs `messages:`, a list of {channel: email, template: ...} (fallback order)")
            return
        out: list[MessageDef] = []
        seen: set[str] = set()
        for i, m in enumerate(msgs):
            p = mp + (i,)
            if not isinstance(m, dict) or not isinstance(m.get("channel"), str):
                self.err(marks, p, "a message needs `channel:` (email, sms, web, agent or an adapter's channel)")
                continue
            ok = True
            for k in m:
                if k not in MESSAGE_KEYS:
                    self.err(marks, p + (k,), f"unknown message key {k!r}{did_you_mean(str(k), MESSAGE_KEYS)}",
                             key=True)
                    ok = False
            ch = m["channel"]
            if ch in seen:
                self.err(marks, p + ("channel",), f"channel {ch!r} has a message already in this campaign")
                ok = False
            seen.add(ch)
            for k in ("template", "text", "placement", "queue", "subject"):
                if k in m and not isinstance(m[k], str):
                    self.err(marks, p + (k,), f"`{k}` must be text, not {m[k]!r}")
                    ok = False
            need = ("text" if ch in TEXT_CHANNELS else "placement" if ch in PLACEMENT_CHANNELS
                    else "queue" if ch in QUEUE_CHANNELS else "template")
            art = "an" if ch[0] in "aeiou" or ch in ("sms", "mms") else "a"
            if need not in m:
                self.err(marks, p, f"{art} {ch} message takes `{need}`")
                ok = False
            for other in ("template", "text", "placement", "queue"):
                if other != need and other in m and not (other == "template" and need in ("placement", "queue")):
                    self.err(marks, p + (other,), f"{art} {ch} message takes `{need}`, not `{other}`", key=True)
                    ok = False
            text = m.get("text")
            if isinstance(text, str) and "{" in text:
                bad = _text_problem(text)
                if bad:
                    self.err(marks, p + ("text",), f"template {text!r}: {bad}")
                    ok = False
            tpl = m.get("template")
            if isinstance(tpl, str) and ch in self.templates and tpl not in self.templates[ch]:
                known = self.templates[ch]
                self.warn(marks, p + ("template",), f"{ch} template {tpl!r} is not in the hub config"
                          f"{did_you_mean(tpl, known)} (known: {', '.join(sorted(known)) or 'none'})")
            if ok:
                out.append(MessageDef(ch, str(m.get("template") or ""), str(m.get("text") or ""),
                                      str(m.get("placement") or ""), str(m.get("queue") or ""),
                                      str(m.get("subject") or ""), marks.at(p)[0]))
        c.messages = tuple(out)


def _eventful(cond: Any) -> str:
    """The subject of ``cond`` (or of an ``any``/``all`` inside it) that needs an event, or ''."""
    if not isinstance(cond, dict) or len(cond) != 1:
        return ""
    (subject, test), = cond.items()
    subject = str(subject)
    if subject.startswith("event.") or subject == "first":
        return subject
    if subject in ("any", "all") and isinstance(test, list):
        for x in test:
            if _eventful(x):
                return subject
    return ""


def _text_problem(text: str) -> str:
    bad = template_paths(text)
    if bad:
        return bad
    for m in re.finditer(r"\{([A-Za-z_][\w.]*)", text.replace("{{", "")):
        root = m.group(1).split(".")[0]
        if root not in TEXT_ROOTS:
            return (f"{{{m.group(1)}}}: a campaign has no event or rule; use "
                    f"{', '.join('{' + r + '.…}' for r in sorted(TEXT_ROOTS))}")
    return ""


def check_sources(sources: list[tuple[str, str | None]], checker: CampaignChecker) -> CampaignSet:
    out = CampaignSet(files=[n for n, _ in sources])
    docs = []
    for name, text in sources:
        if text is None:
            checker.diags.append(Diagnostic(name, 0, 0, "cannot read file (not UTF-8 text?)"))
            continue
        doc, marks, errs = load_yaml(text, name)
        checker.diags.extend(errs)
        if not errs:
            docs.append((doc, marks))
            if isinstance(doc, dict):
                checker.rules.collect(doc)
    for doc, marks in docs:
        for c in checker.check_document(doc, marks):
            if c.name in out.campaigns:
                o = out.campaigns[c.name]
                checker.diags.append(Diagnostic(c.file, c.line, 1, f"duplicate campaign name {c.name!r} "
                                                f"(also at {o.file}:{o.line})"))
                continue
            out.campaigns[c.name] = c
    diags = list(dict.fromkeys(checker.diags))
    out.errors = [d for d in diags if d.severity == "error"]
    out.warnings = [d for d in diags if d.severity != "error"]
    return out


def known_segments(directory: Path) -> set[str] | None:
    """Segment names of ``directory/segments`` (None when they cannot be read: not cross-checked)."""
    d = directory / "segments"
    if not d.is_dir():
        return None
    try:
        from ..analysis.segments import load_segments

        return set(load_segments(d).defs)
    except Exception:  # the analysis plugin reports its own errors
        return None


def load_campaigns(directory: str | Path, *, vocabulary: Vocabulary | None = None, event_types: Any = None,
                   templates: dict[str, set[str]] | None = None, rule_segments: set[str] | None = None) -> CampaignSet:
    """Every campaign file in ``directory/campaigns`` (``directory`` is the rules directory);
    never raises for bad content (see ``errors``). Segments are checked against
    ``directory/segments`` (and ``rule_segments``, those rules set), offers against the catalogue
    in ``directory/offers``, templates against the hub config's adapters (``templates``)."""
    d = Path(directory)
    segs = known_segments(d)
    if segs is not None and rule_segments:
        segs = segs | rule_segments
    offers, _ = catalogue_ids(d / "offers")
    chk = CampaignChecker(vocabulary=vocabulary, event_types=event_types, segments=segs, offers=offers,
                          templates=templates)
    sources: list[tuple[str, str | None]] = []
    for p in campaign_files(d):
        try:
            sources.append((str(p), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            sources.append((str(p), None))
    return check_sources(sources, chk)


def parse_campaign(text: str, name: str = "campaign.yaml", **kw: Any) -> Campaign:
    """One campaign from YAML text (the API's way in); :class:`CampaignError` lists the problems."""
    cs = check_sources([(name, text)], CampaignChecker(**kw))
    if cs.errors:
        raise CampaignError("\n".join(map(str, cs.errors)))
    if len(cs.campaigns) != 1:
        raise CampaignError(f"{name}: expected exactly one campaign, found {len(cs.campaigns)}")
    return next(iter(cs.campaigns.values()))


__all__ = ["Campaign", "CampaignSet", "CampaignChecker", "CampaignError", "MessageDef", "Schedule",
           "load_campaigns", "parse_campaign", "campaign_files"]
