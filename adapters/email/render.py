"""Rendering for the email adapter: the Jinja2 templates, the personalised links, the MIME bytes.

Why its own module: template authors and the rendering cost (one per message, on the adapter's
event loop) are a job apart from SMTP and from the tracking endpoint (issue 19). Templates are
looked up inline (``templates``), then in ``templates_dir``, then among the built-in ones in
``templates/``, and each is compiled once.
"""

from __future__ import annotations

from email.utils import formataddr
from pathlib import Path
from typing import Any

from shopkeeper.outbox import Message

from ..templating import names_variable
from .mime import build_mime, date_header, header_value
from .tracking import Signer

TEMPLATES = Path(__file__).parent / "templates"


def template_names(section: dict[str, Any] | None = None) -> set[str]:
    """The templates this adapter can render with the settings ``section`` (raw, unvalidated):
    inline ``templates`` with a text or html part, ``NAME.txt``/``NAME.html`` in ``templates_dir``
    and the built-in ones shipped in ``templates/``. What ``shopkeeper_message_templates``
    declares for the ``email`` channel, so rules naming a template that exists nowhere are
    caught by ``rules check`` and at hub start."""
    section = section or {}

    def in_dir(d: Path) -> set[str]:
        if not d.is_dir():
            return set()
        return {p.name.rsplit(".", 1)[0] for p in d.iterdir()
                if p.is_file() and p.suffix in (".txt", ".html") and not p.name.endswith(".subject.txt")}

    inline = section.get("templates") or {}
    names = {str(k) for k, parts in (inline.items() if isinstance(inline, dict) else ())
             if isinstance(parts, dict) and ("text" in parts or "html" in parts)}
    tdir = section.get("templates_dir")
    return names | (in_dir(Path(str(tdir))) if tdir else set()) | in_dir(TEMPLATES)


class Renderer:
    """Renders an outbox message for one customer with the adapter's templates and signer."""

    def __init__(self, cfg: Any, signer: Signer) -> None:
        self.cfg = cfg
        self.signer = signer
        self._templates: dict[str, tuple[Any, Any, Any]] = {}
        self._from_header: str | None = None
        self._names_customer: dict[str, bool] = {}
        self._env = self._make_env()

    def _make_env(self) -> Any:
        import jinja2

        loaders: list[Any] = []
        if self.cfg.templates:
            flat = {}
            for name, parts in self.cfg.templates.items():
                for part, ext in (("subject", "subject.txt"), ("text", "txt"), ("html", "html")):
                    if part in (parts or {}):
                        flat[f"{name}.{ext}"] = parts[part]
            loaders.append(jinja2.DictLoader(flat))
        if self.cfg.templates_dir:
            loaders.append(jinja2.FileSystemLoader(self.cfg.templates_dir))
        loaders.append(jinja2.FileSystemLoader(str(TEMPLATES)))
        return jinja2.Environment(loader=jinja2.ChoiceLoader(loaders),
                                  autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                                                      default_for_string=False),
                                  undefined=jinja2.ChainableUndefined, auto_reload=False, cache_size=400)

    def _template(self, name: str, ext: str) -> Any:
        import jinja2

        try:
            t = self._env.get_template(f"{name}.{ext}")
        except jinja2.TemplateNotFound:
            return None
        # Jinja2 keeps a template's globals as a ChainMap over the environment's; every render
        # copies them into the new context and makes a set of their names, iterating the ChainMap
        # in Python (~30% of a render of these small templates). Nothing changes the globals after
        # the environment is made, so a plain dict of the same names renders the same, faster.
        t.globals = dict(t.globals)
        return t

    def templates_for(self, name: str) -> tuple[Any, Any, Any]:
        """(subject, text, html) compiled templates of ``name``, compiled once."""
        got = self._templates.get(name)
        if got is None:
            got = self._templates[name] = tuple(self._template(name, e) for e in ("subject.txt", "txt", "html"))
        return got

    def names_customer(self, name: str) -> bool:
        """Does template ``name`` (its subject, text and HTML parts and every template they include,
        import or extend) name the variable ``customer`` — the whole 360° view? The others read the
        contact part only (``traits``, ``first_name``, the address). Decided once per name from
        the templates' source; a template referred to by a computed name counts as naming it."""
        got = self._names_customer.get(name)
        if got is None:
            got = self._names_customer[name] = any(
                names_variable(self._env, f"{name}.{ext}") for ext in ("subject.txt", "txt", "html"))
        return got

    def render(self, message: Message, view: dict[str, Any], address: str, message_id: str, base: str) -> bytes:
        """The personalised message for ``view`` (the customer) and ``message.payload`` (the offer),
        as the RFC 5322 bytes handed to the SMTP server; ``base`` is the tracking endpoint's URL."""
        name = message.template or "default"
        subject_t, text_t, html_t = self.templates_for(name)
        if text_t is None and html_t is None:
            raise ValueError(f"email: no template named {name!r} (NAME.txt or NAME.html)")
        ident = {"c": message.customer_id, "i": message.id, "m": message_id, "a": address, "p": message.purpose,
                 "g": str(message.payload.get("campaign") or "")}
        tok = self.signer.sign(ident)
        unsubscribe_url = f"{base}/u/{tok}"

        tracked: dict[str, str] = {}  # the text and HTML parts link the same URLs: sign each once

        def track(url: str) -> str:
            link = tracked.get(url)
            if link is None:
                link = tracked[url] = f"{base}/c/{self.signer.sign({**ident, 'u': url})}"
            return link

        traits = view.get("traits") or {}
        ctx = {"customer": view, "traits": traits, "first_name": traits.get("first_name") or traits.get("name"),
               "email": address, "payload": message.payload, "offer": message.payload.get("offer"),
               "track": track, "unsubscribe_url": unsubscribe_url, "open_pixel_url": f"{base}/o/{tok}.gif",
               "message_id": message_id}
        if self._from_header is None:
            cfg = self.cfg
            self._from_header = header_value(formataddr((cfg.from_name, cfg.from_addr)) if cfg.from_name
                                              else cfg.from_addr)
        headers = [("From", self._from_header), ("To", header_value(address)),
                   ("Subject", header_value((subject_t.render(ctx).strip() if subject_t is not None else "")
                                             or "(no subject)")),
                   ("Message-ID", header_value(message_id)), ("Date", date_header()),
                   ("List-Unsubscribe", f"<{unsubscribe_url}>"),
                   ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
        if message.payload.get("campaign"):
            headers.append(("X-Campaign", header_value(str(message.payload["campaign"]))))
        text = text_t.render(ctx) if text_t is not None else None
        html = html_t.render(ctx) if html_t is not None else None
        return build_mime(headers, text, html)


__all__ = ["TEMPLATES", "Renderer", "template_names"]
