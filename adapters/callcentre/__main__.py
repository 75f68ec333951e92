"""``python -m shopkeeper.adapters.callcentre hash-password [PASSWORD]``: a hash for the config file."""

from __future__ import annotations

import getpass
import sys

from .config import hash_password


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "hash-password" or len(args) > 2:
        print(__doc__)
        raise SystemExit(2)
    pw = args[1] if len(args) == 2 else getpass.getpass("agent password: ")
    print(hash_password(pw))


if __name__ == "__main__":
    main()
