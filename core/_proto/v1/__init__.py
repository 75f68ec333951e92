"""Generated from protos/shopkeeper/v1 by ``python scripts/codegen.py``; do not edit."""
