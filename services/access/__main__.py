"""``python -m services.access``: mint and check the dashboard's sign-in tokens, or make a secret."""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import time
from datetime import UTC, datetime

from services.access.roles import ROLES
from services.access.tokens import AuthConfigError, load_auth_config, mint_token, parse_ttl, verify_token
from services.errors import AuthError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.access",
                                     description="Mint and check the dashboard's sign-in tokens.")
    commands = parser.add_subparsers(dest="command", required=True)
    mint = commands.add_parser("mint", help="print a token for a person or a wall screen")
    mint.add_argument("--sub", required=True, help="who the token is for (a person, or e.g. wall-screen-3)")
    mint.add_argument("--role", required=True, choices=ROLES)
    mint.add_argument("--ttl", default="12h", help="lifetime: 30d, 12h, 15m, 90s (default 12h)")
    check = commands.add_parser("verify", help="check a token (read from stdin, so it stays out of shell history)")
    check.add_argument("token", nargs="?", help="the token; omit to read it from stdin")
    commands.add_parser("secret", help="print a new random HS256 secret for DASHBOARD_JWT_SECRET")
    args = parser.parse_args(argv)

    if args.command == "secret":
        print(secrets.token_urlsafe(48))
        return 0
    try:
        config = load_auth_config()
    except AuthConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if config is None:
        print("error: no key is configured (open local mode). Set DASHBOARD_JWT_SECRET to 32+ random bytes "
              "(`python -m services.access secret` makes one), plus DASHBOARD_JWT_ISSUER/AUDIENCE if needed.",
              file=sys.stderr)
        return 2
    if args.command == "mint":
        try:
            ttl = parse_ttl(args.ttl)
            token = mint_token(config, args.sub, args.role, ttl)
        except (ValueError, AuthConfigError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        until = datetime.fromtimestamp(time.time() + ttl, UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"token for {args.sub} ({args.role}), valid until {until}:", file=sys.stderr)
        print(token)
        return 0
    token = args.token if args.token is not None else sys.stdin.read()
    try:
        verified = verify_token(token, config, source="cli")
    except AuthError as exc:
        print(f"refused ({exc.title}): {exc.message}", file=sys.stderr)
        return 1
    until = datetime.fromtimestamp(verified.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"valid: sub={verified.subject} role={verified.role} until {until}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
