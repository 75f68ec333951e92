"""Generated from protos/shopkeeper/v1 by ``python scripts/codegen.py`` (``v1``; do not edit), and
``values``: the one protocol-level value conversion the SDK and the hub share."""
