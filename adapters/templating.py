"""What the outbound adapters' Jinja2 templates read: one answer for email and SMS.

A delivery reads only the customer's *contact part* (identities, traits, soft facts) unless the
message's template names the variable ``customer`` — the whole 360° view, which costs the hub a
full view per message (docs/benchmarks.md §74, §76). Both adapters ask :func:`names_variable`
once per template name and keep the answer."""

from __future__ import annotations

from typing import Any


def names_variable(env: Any, template: str, variable: str = "customer", seen: set[str] | None = None) -> bool:
    """Does ``template`` in the Jinja2 environment ``env`` — or any template it includes, imports
    or extends — name ``variable``? Decided from the source, without rendering. A template the
    loader does not know names nothing; one referred to by a computed name counts as naming it
    (we cannot tell which template that will be)."""
    import jinja2
    from jinja2 import meta

    seen = set() if seen is None else seen
    if template in seen:
        return False
    seen.add(template)
    try:
        source = env.loader.get_source(env, template)[0]
    except jinja2.TemplateNotFound:
        return False
    ast = env.parse(source)
    if variable in meta.find_undeclared_variables(ast):
        return True
    return any(ref is None or names_variable(env, ref, variable, seen) for ref in meta.find_referenced_templates(ast))
