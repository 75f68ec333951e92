"""The shipped example rules name only email templates the email adapter ships (issue 11: they
named templates that did not exist, so their messages could never be rendered)."""

from __future__ import annotations

from pathlib import Path

import jinja2
import yaml

REPO = Path(__file__).resolve().parents[2]
BUILTIN = REPO / "adapters" / "email" / "templates"


def email_templates_named_by_rules() -> set[str]:
    names: set[str] = set()

    def walk(v: object) -> None:
        if isinstance(v, dict):
            send = v.get("send_message")
            if isinstance(send, dict) and send.get("channel") == "email":
                names.add(str(send["template"]))
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for p in (REPO / "rules").glob("*.yaml"):
        if not p.name.endswith(".test.yaml"):
            walk(yaml.safe_load(p.read_text()))
    return names


def test_every_email_template_the_example_rules_name_is_shipped_and_compiles() -> None:
    named = email_templates_named_by_rules()
    assert {"cart_reminder", "welcome", "welcome_discount", "summer_sale", "thanks_first_order"} <= named
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(BUILTIN), autoescape=False)
    env.globals["track"] = lambda url: url
    for name in sorted(named):
        assert (BUILTIN / f"{name}.txt").is_file() or (BUILTIN / f"{name}.html").is_file(), name
        text = env.get_template(f"{name}.txt").render(first_name="Ann", payload={}, offer=None,
                                                       unsubscribe_url="https://u")
        assert "Ann" in text, name
        assert env.get_template(f"{name}.subject.txt").render(payload={}).strip(), name
