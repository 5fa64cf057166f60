"""Who acts: the X-User rules of DESIGN §1, applied after the bearer token (if any) has been verified.

Contract:
- `resolve_principal(identity, x_user=..., settings=...)`: X-User omitted → the token's user; equal → the
  same; different → allowed only when the token's user is an admin, and then the request acts *on behalf
  of* X-User (`Principal(user=X-User, actor=token user, is_admin=True)`, logged); otherwise `Forbidden`.
- `trusted_principal(x_user, settings=...)`: `auth.mode: none` (demo only): X-User is believed; no X-User
  is refused with 401, since anonymous access is not allowed.
- `header_value(headers, name)`: case-insensitive header lookup on any mapping.
- `user_name(raw, source=)`: the one check of a user name (X-User, a token's username claim, `?user=`):
  valid UTF-8 (aiohttp hands undecodable header bytes over as lone surrogates), NFC-normalised, at most
  253 characters, no control, format (bidi overrides, zero-width), private-use or unassigned
  characters, no whitespace but inner ASCII spaces, and one script (plus common characters such as
  digits and `@._-`; Han may mix with Hiragana/Katakana, Bopomofo or Hangul, as UTS #39's
  "highly restrictive" level allows), so `аdmin` with a Cyrillic `а` is not a second `admin`.
  Anything else is `BadRequest` (400) naming the rule, never echoing the raw value.
- `x_user(headers)`: the X-User value, or None; two X-User headers are a 400, not "the first one wins".

User names and the actor are logged (audit); tokens and claims never are.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from confusable_homoglyphs import categories

from gateway.auth import Principal
from gateway.auth.settings import AuthSettings
from gateway.errors import BadRequest, Forbidden, Unauthenticated

X_USER_HEADER = "X-User"
MAX_USER_NAME = 253  # a Kubernetes user name must fit an Impersonate-User header and our labels' source

# General categories a user name may not contain: controls, format characters (bidi overrides,
# zero-width joiners), surrogates (undecodable bytes), private use, unassigned, line/paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NEUTRAL_SCRIPTS = frozenset({"COMMON", "INHERITED"})
# UTS #39 "highly restrictive": a single script, or Han with the scripts written alongside it.
_ALLOWED_SCRIPT_MIXES = (frozenset({"HAN", "HIRAGANA", "KATAKANA"}), frozenset({"HAN", "BOPOMOFO"}),
                         frozenset({"HAN", "HANGUL"}))

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class TokenIdentity:
    """What a verified token says about its bearer."""

    user: str
    groups: frozenset[str] = frozenset()


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """The first value of header `name`, case-insensitively, on any mapping (aiohttp's or a plain dict)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def user_name(raw: str, *, source: str) -> str:
    """`raw` as a user name, or BadRequest saying which rule it breaks (see module docstring)."""
    problem = _user_name_problem(raw)
    if problem is not None:
        raise BadRequest(f"{source} is not a usable user name: {problem}", details={"field": source})
    return raw


@functools.lru_cache(maxsize=4096)
def _user_name_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > MAX_USER_NAME:
        return f"it is longer than {MAX_USER_NAME} characters"
    if any(unicodedata.category(c) == "Cs" for c in name):
        return "it is not valid UTF-8"
    if unicodedata.normalize("NFC", name) != name:
        return "it is not in Unicode normalisation form NFC"
    for c in name:
        category = unicodedata.category(c)
        if category in _FORBIDDEN_CATEGORIES:
            return f"it contains the invisible or control character U+{ord(c):04X}"
        if category == "Zs" and c != " ":
            return f"it contains the space character U+{ord(c):04X}"
    if name != name.strip(" "):
        return "it starts or ends with a space"
    scripts = frozenset(categories.unique_aliases(name)) - _NEUTRAL_SCRIPTS
    if len(scripts) > 1 and not any(scripts <= allowed for allowed in _ALLOWED_SCRIPT_MIXES):
        return f"it mixes scripts ({', '.join(sorted(s.title() for s in scripts))}), as look-alike names do"
    return None


def x_user(headers: Mapping[str, str]) -> str | None:
    """The X-User header (validated), None when absent or blank; two X-User headers are a 400."""
    getall = getattr(headers, "getall", None)
    values: list[str] = list(getall(X_USER_HEADER, [])) if getall is not None else (
        [v for k, v in headers.items() if k.lower() == X_USER_HEADER.lower()])
    if len(values) > 1:
        raise BadRequest("the X-User header is given more than once; send it once")
    if not values or not values[0].strip(" \t"):
        return None
    return user_name(values[0].strip(" \t"), source="X-User")


def resolve_principal(identity: TokenIdentity, *, x_user: str | None, settings: AuthSettings) -> Principal:
    """Apply the X-User rules to a verified token identity (`x_user` already checked by `x_user()`);
    raise `Forbidden` when X-User may not be used."""
    requested = x_user
    is_admin = settings.is_admin(user=identity.user, groups=identity.groups)
    if requested is None or requested == identity.user:
        return Principal(user=identity.user, groups=identity.groups, is_admin=is_admin)
    if not is_admin:
        log.info("x-user refused", user=identity.user, requested_user=requested[:64])
        raise Forbidden("X-User must name the authenticated user (only admins may act on behalf of others)")
    # The target's own groups are unknown here; acting on behalf grants the admin's object-level rights
    # under the target's name (jobs created are owned by the target), recorded with the real caller.
    log.info("acting on behalf", user=requested, actor=identity.user)
    return Principal(user=requested, groups=frozenset(), is_admin=True, actor=identity.user)


def trusted_principal(x_user: str | None, *, settings: AuthSettings) -> Principal:
    """auth.mode none: believe X-User (already checked by `x_user()`); refuse a missing one with 401."""
    requested = x_user
    if requested is None:
        raise Unauthenticated("the X-User header is required (authentication is disabled, anonymous access is not)")
    return Principal(user=requested, groups=frozenset(),
                     is_admin=settings.is_admin(user=requested, groups=frozenset()))
