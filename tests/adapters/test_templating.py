"""``adapters.templating.names_variable``: the one answer email and SMS use to decide whether a
message's template needs the customer's whole 360° view or only its contact part."""

from __future__ import annotations

import jinja2

from shopkeeper.adapters.templating import names_variable

TEMPLATES = {
    "plain": "Hi {{ traits.first_name }}",
    "whole": "Hi {{ customer.id }}",
    "wraps_whole": "{% include 'whole' %} and more",
    "wraps_plain": "{% include 'plain' %} and more",
    "extends_whole": "{% extends 'whole' %}",
    "computed": "{% include traits.part %}",
    "loop_a": "{% include 'loop_b' %}",
    "loop_b": "{% include 'loop_a' %}{{ first_name }}",
    "shadowed": "{% set customer = 1 %}{{ customer }}",
}


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES))


def test_a_template_names_customer_itself_or_through_what_it_includes_or_extends() -> None:
    env = _env()
    assert names_variable(env, "whole") and names_variable(env, "wraps_whole") and names_variable(env, "extends_whole")
    assert not names_variable(env, "plain") and not names_variable(env, "wraps_plain")


def test_a_computed_include_counts_as_naming_it_and_an_unknown_or_cyclic_template_ends() -> None:
    env = _env()
    assert names_variable(env, "computed")  # which template it includes is known only when rendering
    assert not names_variable(env, "no-such-template")
    assert not names_variable(env, "loop_a")  # a cycle ends; neither names customer
    assert not names_variable(env, "shadowed")  # set in the template itself: not the caller's variable
    assert names_variable(env, "plain", variable="traits")
