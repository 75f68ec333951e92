"""Generated from protos/shopkeeper/v1 by ``python -m shopkeeper.hub.codegen``; do not edit."""
