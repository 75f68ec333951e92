"""``shopkeeper models …``, ``shopkeeper segments …``, ``shopkeeper offers …`` and ``shopkeeper report …``."""

from __future__ import annotations

import json

import click

from ..cli import open_store_or_exit, store_option


@click.group()
def models() -> None:
    """Fit and inspect the scoring models (CLV: BG/NBD + Gamma-Gamma; RFM)."""


@models.command("fit")
@store_option
@click.option("--horizon", default=52.0, show_default=True, help="Weeks ahead for expected purchases and CLV.")
@click.option("--discount", default=0.0, show_default=True, help="Discount rate per week for CLV (0 = none).")
@click.option("--dry-run", is_flag=True, help="Fit and print, write nothing.")
def models_fit(store_uri: str, horizon: float, discount: float, dry_run: bool) -> None:
    """Fit CLV and RFM on the store's order history and write every customer's scores."""
    from .models import fit_models

    store = open_store_or_exit(store_uri)
    try:
        report = fit_models(store, horizon=horizon, discount=discount, write=not dry_run)
    finally:
        store.close()
    clv = report.get("clv")
    if clv:
        b, g = clv["bgnbd"], clv["gg"]
        click.echo(f"BG/NBD  r={b['r']:.4g} alpha={b['alpha']:.4g} a={b['a']:.4g} b={b['b']:.4g}  "
                   f"({b['n']} buyers, LL {b['loglik']:.1f})")
        if g:
            click.echo(f"Gamma-Gamma  p={g['p']:.4g} q={g['q']:.4g} gamma={g['v']:.4g}  ({g['n']} repeat buyers)")
        click.echo(f"CLV model version {clv['version']} (horizon {horizon:g} weeks)")
    else:
        click.echo(f"CLV not fitted: {report.get('clv_error')}")
    click.echo(f"RFM model version {report['rfm']['version']}")
    if not dry_run:
        click.echo(f"scored {report['scored']} customers in {report['score_seconds']} s")


@models.command("show")
@store_option
def models_show(store_uri: str) -> None:
    """Print the models in force (JSON)."""
    from .state import folder

    store = open_store_or_exit(store_uri)
    try:
        with store.read() as f:
            m = folder(f, "models")
            data = {k: v for k, v in (m.items() if m is not None else []) if "@" not in k}
    finally:
        store.close()
    click.echo(json.dumps(data, indent=2, default=str))


def register(cli: click.Group) -> None:
    cli.add_command(models)
