"""OIDC verification against a real local issuer over HTTP, with really signed tokens.

Every attack is a real token; every refusal must be a bare 401 with `WWW-Authenticate: Bearer
error="invalid_token"` and the same message, whatever check failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from joserfc.jwk import ECKey, OctKey, RSAKey
from structlog.testing import capture_logs

from gateway.auth import IssuerUnavailable, OIDCAuthenticator, Principal
from gateway.errors import Forbidden, Unauthenticated
from tests.auth.conftest import FakeClock, MakeAuthenticator
from tests.auth.issuer import LocalIssuer, b64url

GENERIC_MESSAGE = Unauthenticated().message


def bearer(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


async def assert_unauthenticated(authenticator: OIDCAuthenticator, headers: dict[str, str]) -> None:
    with pytest.raises(Unauthenticated) as caught:
        await authenticator.authenticate(headers)
    error = caught.value
    assert error.status == 401
    assert error.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    assert error.message == GENERIC_MESSAGE  # never a hint of which check failed


# --- accepted tokens ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["RSA", "EC"])
async def test_valid_token_rs256_and_es256(issuer: LocalIssuer, make_authenticator: MakeAuthenticator,
                                           kind: str) -> None:
    authenticator = await make_authenticator()
    token = issuer.mint(kind=kind, user="alice", groups=["team-a", "ml"])  # type: ignore[arg-type]
    principal = await authenticator.authenticate(bearer(token))
    assert principal == Principal(user="alice", groups=frozenset({"team-a", "ml"}), is_admin=False)


async def test_audience_list_containing_ours_is_accepted(issuer: LocalIssuer,
                                                        make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator()
    token = issuer.mint(aud=["other-service", issuer.audience])
    assert (await authenticator.authenticate(bearer(token))).user == "alice"


async def test_expiry_within_leeway_is_accepted(issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator(oidc={"leewaySeconds": 30})
    now = int(time.time())
    token = issuer.mint(exp=now - 5, iat=now - 60, nbf=now - 60)
    assert (await authenticator.authenticate(bearer(token))).user == "alice"


async def test_token_without_kid_uses_the_only_key_of_its_type(make_authenticator: MakeAuthenticator) -> None:
    async with LocalIssuer(kinds=("RSA",)) as single:
        from tests.auth.conftest import auth_settings
        authenticator = OIDCAuthenticator(auth_settings(single))
        await authenticator.start()
        try:
            kid = single.kid_of("RSA")
            token = single.mint(kid=kid, header={"kid": None})
            assert (await authenticator.authenticate(bearer(token))).user == "alice"
        finally:
            await authenticator.close()


# --- refused tokens -------------------------------------------------------------------------------

async def test_missing_or_malformed_authorization(issuer: LocalIssuer,
                                                  make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator()
    token = issuer.mint()
    for headers in ({}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {token}"},
                    bearer("not-a-jwt"), bearer("a.b.c"), bearer("a.b.c.d.e"), bearer(token + "x" * 20_000),
                    bearer(token.replace(".", "..", 1))):
        await assert_unauthenticated(authenticator, headers)


@pytest.mark.parametrize("claims_case", [
    "expired", "not-yet-valid", "iat-in-future", "wrong-aud", "wrong-iss", "no-exp", "no-aud", "no-iss",
    "no-username", "username-not-string", "exp-not-number",
])
async def test_claims_are_checked(issuer: LocalIssuer, make_authenticator: MakeAuthenticator,
                                  claims_case: str) -> None:
    authenticator = await make_authenticator(oidc={"leewaySeconds": 30})
    now = int(time.time())
    cases: dict[str, dict[str, Any]] = {
        "expired": {"exp": now - 120, "iat": now - 600, "nbf": now - 600},
        "not-yet-valid": {"nbf": now + 120},
        "iat-in-future": {"iat": now + 120},
        "wrong-aud": {"aud": "someone-else"},
        "wrong-iss": {"iss": "http://127.0.0.1:1/realms/evil"},
        "no-exp": {"exp": None},
        "no-aud": {"aud": None},
        "no-iss": {"iss": None},
        "no-username": {"preferred_username": None},
        "username-not-string": {"preferred_username": ["alice"]},
        "exp-not-number": {"exp": "tomorrow"},
    }
    await assert_unauthenticated(authenticator, bearer(issuer.mint(**cases[claims_case])))


async def test_bad_signature(issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator()
    token = issuer.mint()
    header, payload, signature = token.split(".")
    tampered_payload = b64url(json.dumps(issuer.claims(user="root", groups=["clever-admins"])).encode())
    await assert_unauthenticated(authenticator, bearer(f"{header}.{tampered_payload}.{signature}"))
    flipped = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    await assert_unauthenticated(authenticator, bearer(f"{header}.{payload}.{flipped}"))
    # A key the issuer never published, claiming a published kid.
    forged = issuer.mint(kid=issuer.kid_of("RSA"), signing_key=RSAKey.generate_key(2048))
    await assert_unauthenticated(authenticator, bearer(forged))


async def test_alg_none_is_refused(issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator()
    await assert_unauthenticated(authenticator, bearer(issuer.mint_unsigned(user="root")))
    fetches = issuer.jwks_requests
    await assert_unauthenticated(authenticator, bearer(issuer.mint_unsigned(user="root")))
    assert issuer.jwks_requests == fetches  # refused before any key lookup


async def test_hs256_with_public_key_as_secret_is_refused(issuer: LocalIssuer,
                                                          make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator()
    kid = issuer.kid_of("RSA")
    await assert_unauthenticated(authenticator, bearer(issuer.mint_hmac_with_public_key(kid, user="root")))
    jwk_json = json.dumps(issuer.public_jwks()["keys"][0]).encode()
    await assert_unauthenticated(authenticator,
                                 bearer(issuer.mint_hmac_with_public_key(kid, secret=jwk_json, user="root")))
    # Even properly signed HS256 with some secret: HS* is never on the allow-list.
    hs = issuer.mint(kid=kid, alg="HS256", signing_key=OctKey.generate_key(256))
    await assert_unauthenticated(authenticator, bearer(hs))


async def test_algorithm_outside_allow_list_is_refused(issuer: LocalIssuer,
                                                       make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator(oidc={"algorithms": ["RS256"]})
    await assert_unauthenticated(authenticator, bearer(issuer.mint(kind="EC")))


async def test_key_type_confusion_is_refused(issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    """An ES256 token naming the RSA key's kid, and a JWK whose own alg differs from the header's."""
    authenticator = await make_authenticator(oidc={"algorithms": ["RS256", "RS384", "ES256"]})
    rsa_kid = issuer.kid_of("RSA")
    await assert_unauthenticated(authenticator,
                                 bearer(issuer.mint(kid=rsa_kid, alg="ES256", signing_key=ECKey.generate_key("P-256"))))
    await assert_unauthenticated(authenticator, bearer(issuer.mint(kid=rsa_kid, alg="RS384")))


async def test_unknown_kid_is_refused_after_one_refresh(issuer: LocalIssuer,
                                                        make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator(oidc={"jwksRefreshMinIntervalSeconds": 0})
    before = issuer.jwks_requests
    stray = RSAKey.generate_key(2048)
    await assert_unauthenticated(authenticator, bearer(issuer.mint(kid="nobody", alg="RS256", signing_key=stray)))
    assert issuer.jwks_requests == before + 1


async def test_wrong_token_type_is_refused(issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator()
    await assert_unauthenticated(authenticator, bearer(issuer.mint(header={"typ": "dpop+jwt"})))


# --- key rotation and refresh ---------------------------------------------------------------------

async def test_rotation_new_key_picked_up_and_old_key_dropped(issuer: LocalIssuer,
                                                              make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator(oidc={"jwksRefreshMinIntervalSeconds": 0})
    old_token = issuer.mint()
    assert (await authenticator.authenticate(bearer(old_token))).user == "alice"  # now cached too

    new_kid = issuer.rotate("EC")
    new_token = issuer.mint(kid=new_kid, user="bob")
    assert (await authenticator.authenticate(bearer(new_token))).user == "bob"  # unknown kid → refresh

    # The old key is gone from the set: its token is refused even though it was cached and unexpired.
    await assert_unauthenticated(authenticator, bearer(old_token))
    await assert_unauthenticated(authenticator, bearer(issuer.mint(kid="rsa-1", user="carol")))


async def test_refresh_rate_limit_under_a_flood_of_unknown_kids(issuer: LocalIssuer,
                                                                make_authenticator: MakeAuthenticator) -> None:
    monotonic = FakeClock(1000.0)
    authenticator = await make_authenticator(oidc={"jwksRefreshMinIntervalSeconds": 1}, monotonic=monotonic)
    stray = ECKey.generate_key("P-256")
    flood = [issuer.mint(kid=f"made-up-{i}", alg="ES256", signing_key=stray) for i in range(200)]
    after_start = issuer.jwks_requests
    assert after_start == 1

    monotonic.advance(2)  # one refresh is allowed now, and only one
    results = await asyncio.gather(*(authenticator.authenticate(bearer(t)) for t in flood),
                                   return_exceptions=True)
    assert all(isinstance(r, Unauthenticated) for r in results)
    for token in flood[:50]:
        await assert_unauthenticated(authenticator, bearer(token))
    assert issuer.jwks_requests == after_start + 1

    monotonic.advance(2)
    for token in flood[:50]:
        await assert_unauthenticated(authenticator, bearer(token))
    assert issuer.jwks_requests == after_start + 2
    assert authenticator.stats.jwks_fetches == 3


async def test_a_key_published_just_after_a_garbage_kid_refresh_is_accepted(
        issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    """The lock-out: a made-up kid causes a fetch; the issuer then publishes a new key; a token signed with
    it must not be refused until some later fetch is allowed: it waits for the next one (about 1 s)."""
    authenticator = await make_authenticator()  # the default interval: 1 s
    stray = ECKey.generate_key("P-256")
    await assert_unauthenticated(authenticator, bearer(issuer.mint(kid="garbage", alg="ES256", signing_key=stray)))
    fetches = issuer.jwks_requests
    new_kid = issuer.add_key("EC")  # published right after that fetch
    started = time.monotonic()
    principal = await authenticator.authenticate(bearer(issuer.mint(kid=new_kid, user="dora")))
    waited = time.monotonic() - started
    assert principal.user == "dora"
    assert issuer.jwks_requests == fetches + 1  # the next allowed fetch, and only that one
    assert waited < 3.0  # about the rest of the interval, plus the fetch


async def test_a_flood_of_made_up_kids_costs_at_most_one_fetch_per_second(
        issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator()  # the default interval: 1 s
    stray = ECKey.generate_key("P-256")
    before = issuer.jwks_requests
    started = time.monotonic()
    refused = 0
    waits: list[float] = []

    async def one(n: int) -> None:
        nonlocal refused
        sent = time.monotonic()
        with pytest.raises(Unauthenticated):
            await authenticator.authenticate(bearer(issuer.mint(kid=f"flood-{n}", alg="ES256", signing_key=stray)))
        refused += 1
        waits.append(time.monotonic() - sent)

    batches = []
    for wave in range(12):  # 240 made-up kids over about 2.4 s
        batches.append(asyncio.gather(*(one(wave * 20 + i) for i in range(20))))
        await asyncio.sleep(0.2)
    await asyncio.gather(*batches)
    elapsed = time.monotonic() - started
    fetches = issuer.jwks_requests - before
    assert refused == 240
    assert 1 <= fetches <= elapsed + 1, (fetches, elapsed)  # at most one per started second
    assert max(waits) < 3.0  # each waited for one fetch at most: bounded


async def test_cold_start_burst_fetches_once(issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    """Single flight: a burst of requests before any key is known causes one discovery and one JWKS fetch."""
    authenticator = await make_authenticator(start=False, oidc={"jwksRefreshMinIntervalSeconds": 0})
    tokens = [issuer.mint(user=f"user{i}", kind="EC" if i % 2 else "RSA") for i in range(100)]
    principals = await asyncio.gather(*(authenticator.authenticate(bearer(t)) for t in tokens))
    assert [p.user for p in principals] == [f"user{i}" for i in range(100)]
    assert issuer.requests == {"discovery": 1, "jwks": 1}


async def test_stale_key_set_is_refreshed_in_background(issuer: LocalIssuer,
                                                        make_authenticator: MakeAuthenticator) -> None:
    monotonic = FakeClock(1000.0)
    authenticator = await make_authenticator(oidc={"jwksMaxAgeSeconds": 60}, monotonic=monotonic)
    assert issuer.jwks_requests == 1
    monotonic.advance(61)
    assert (await authenticator.authenticate(bearer(issuer.mint(user="dave")))).user == "dave"
    for _ in range(50):
        if issuer.jwks_requests == 2:
            break
        await asyncio.sleep(0.01)
    assert issuer.jwks_requests == 2


# --- issuer down ----------------------------------------------------------------------------------

async def test_issuer_down_with_cached_keys_keeps_verifying(issuer: LocalIssuer,
                                                            make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator(oidc={"jwksRefreshMinIntervalSeconds": 0, "httpTimeoutSeconds": 1})
    await issuer.stop()
    fresh = issuer.mint(user="erin")  # never seen, so not cached: verified with the cached keys
    assert (await authenticator.authenticate(bearer(fresh))).user == "erin"
    # Unknown kid: the refresh fails, the old keys stay, the answer is 401 (not 503).
    stray = RSAKey.generate_key(2048)
    await assert_unauthenticated(authenticator, bearer(issuer.mint(kid="new", alg="RS256", signing_key=stray)))
    assert authenticator.keys.loaded
    assert (await authenticator.authenticate(bearer(issuer.mint(user="frank")))).user == "frank"


async def test_cold_start_with_issuer_down_answers_503_then_recovers(issuer: LocalIssuer,
                                                                     make_authenticator: MakeAuthenticator) -> None:
    await issuer.stop()
    monotonic = FakeClock(1000.0)
    authenticator = await make_authenticator(oidc={"jwksRefreshMinIntervalSeconds": 1, "httpTimeoutSeconds": 1},
                                             monotonic=monotonic)
    token = issuer.mint()
    with pytest.raises(IssuerUnavailable) as caught:
        await authenticator.authenticate(bearer(token))
    assert caught.value.status == 503
    assert authenticator.health()["keysLoaded"] is False

    await issuer.start()
    with pytest.raises(IssuerUnavailable):  # rate limit: no new attempt yet
        await authenticator.authenticate(bearer(token))
    assert issuer.requests["discovery"] == 0
    monotonic.advance(2)
    assert (await authenticator.authenticate(bearer(token))).user == "alice"
    assert authenticator.health() == {"issuer": issuer.issuer, "keysLoaded": True, "lastError": None}


async def test_discovery_naming_another_issuer_is_not_trusted(issuer: LocalIssuer,
                                                              make_authenticator: MakeAuthenticator) -> None:
    issuer.discovery_overrides = {"issuer": "http://127.0.0.1:1/realms/evil"}
    authenticator = await make_authenticator()
    with pytest.raises(IssuerUnavailable):
        await authenticator.authenticate(bearer(issuer.mint()))
    assert issuer.jwks_requests == 0


async def test_jwks_uri_must_be_secure(issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    issuer.discovery_overrides = {"jwks_uri": "http://idp.example.com/jwks"}
    authenticator = await make_authenticator()
    assert not authenticator.keys.loaded
    assert "jwks_uri" in (authenticator.health()["lastError"] or "")


# --- token cache ----------------------------------------------------------------------------------

async def test_verified_token_cache(issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    wall = FakeClock(time.time())
    authenticator = await make_authenticator(clock=wall)
    token = issuer.mint(lifetime=60)
    for _ in range(20):
        assert (await authenticator.authenticate(bearer(token))).user == "alice"
    assert authenticator.stats.signature_checks == 1
    assert authenticator.stats.cache_hits == 19
    assert issuer.jwks_requests == 1

    wall.advance(61 + 30)  # past exp + leeway: the cached entry must not outlive the token
    await assert_unauthenticated(authenticator, bearer(token))
    assert authenticator.stats.signature_checks == 2


async def test_token_cache_is_bounded(issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator(oidc={"tokenCacheSize": 3})
    tokens = [issuer.mint(user=f"user{i}") for i in range(5)]
    for token in tokens:
        await authenticator.authenticate(bearer(token))
    await authenticator.authenticate(bearer(tokens[-1]))  # still cached
    await authenticator.authenticate(bearer(tokens[0]))   # evicted: verified again
    assert authenticator.stats.signature_checks == 6
    assert authenticator.stats.cache_hits == 1


# --- configurable claims --------------------------------------------------------------------------

async def test_username_and_groups_claims_are_configurable(issuer: LocalIssuer,
                                                           make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator(oidc={"usernameClaim": "email", "groupsClaim": "realm_access.roles"})
    token = issuer.mint(email="grace@example.com", realm_access={"roles": ["team-b", 7, "clever-admins"]})
    principal = await authenticator.authenticate(bearer(token))
    assert principal == Principal(user="grace@example.com", groups=frozenset({"team-b", "clever-admins"}),
                                  is_admin=True)

    single = await make_authenticator(oidc={"groupsClaim": "team"})
    assert (await single.authenticate(bearer(issuer.mint(team="solo")))).groups == frozenset({"solo"})
    assert (await single.authenticate(bearer(issuer.mint(user="h", team={"x": 1})))).groups == frozenset()


# --- X-User with a verified token -----------------------------------------------------------------

async def test_x_user_rules(issuer: LocalIssuer, make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator()
    alice = issuer.mint(user="alice", groups=["team-a"])
    admin = issuer.mint(user="root", groups=["clever-admins"])

    assert (await authenticator.authenticate(bearer(alice))).user == "alice"
    assert (await authenticator.authenticate(bearer(alice, **{"X-User": "alice"}))).user == "alice"
    assert (await authenticator.authenticate(bearer(alice, **{"x-user": " alice "}))).user == "alice"
    with pytest.raises(Forbidden):
        await authenticator.authenticate(bearer(alice, **{"X-User": "bob"}))

    with capture_logs() as logs:
        acting = await authenticator.authenticate(bearer(admin, **{"X-User": "bob"}))
    assert acting == Principal(user="bob", groups=frozenset(), is_admin=True, actor="root")
    assert {"event": "acting on behalf", "user": "bob", "actor": "root", "log_level": "info"} in logs
    assert await authenticator.authenticate(bearer(admin)) == Principal(
        user="root", groups=frozenset({"clever-admins"}), is_admin=True)


async def test_x_user_without_token_is_401(make_authenticator: MakeAuthenticator) -> None:
    authenticator = await make_authenticator()
    await assert_unauthenticated(authenticator, {"X-User": "alice"})


# --- nothing secret in logs -----------------------------------------------------------------------

async def test_no_token_or_claims_in_logs(issuer: LocalIssuer, make_authenticator: MakeAuthenticator,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    authenticator = await make_authenticator(oidc={"jwksRefreshMinIntervalSeconds": 0})
    secret_claim = "s3cr3t-claim-value"
    good = issuer.mint(user="ivy", groups=["team-a"], secret=secret_claim)
    now = int(time.time())
    bad = [
        issuer.mint(secret=secret_claim, exp=now - 600, iat=now - 900, nbf=now - 900),
        issuer.mint(secret=secret_claim, aud="elsewhere"),
        issuer.mint_unsigned(secret=secret_claim),
        issuer.mint_hmac_with_public_key(issuer.kid_of("RSA"), secret_claim=secret_claim),
        issuer.mint(kid="unknown", alg="RS256", signing_key=RSAKey.generate_key(2048), secret=secret_claim),
    ]
    with capture_logs() as logs:
        await authenticator.authenticate(bearer(good))
        for token in bad:
            with pytest.raises(Unauthenticated):
                await authenticator.authenticate(bearer(token))
    reasons = [entry.get("reason") for entry in logs if entry["event"] == "bearer token rejected"]
    assert len(reasons) == len(bad) and all(reasons)  # the real reason is logged at debug level ...
    text = repr(logs) + caplog.text
    for token in [good, *bad]:
        for segment in token.split("."):
            if len(segment) > 8:
                assert segment not in text  # ... but never the token,
    assert secret_claim not in text  # nor its claims
    assert "team-a" not in text


async def test_keys_named_by_the_token_itself_are_never_used(issuer: LocalIssuer,
                                                             make_authenticator: MakeAuthenticator) -> None:
    """Embedded `jwk`, `jku`/`x5u` URLs, odd kids and unknown `crit` extensions: all refused, nothing fetched."""
    async with LocalIssuer(path="/evil", kinds=("RSA",), pooled_keys=False) as attacker:
        authenticator = await make_authenticator(oidc={"jwksRefreshMinIntervalSeconds": 0})
        evil_kid = attacker.kid_of("RSA")
        evil_key = attacker.private_key(evil_kid)
        public_jwk = attacker.public_jwks()["keys"][0]
        attacks = [
            issuer.mint(kid=evil_kid, alg="RS256", signing_key=evil_key, header={"jwk": public_jwk}),
            issuer.mint(kid=evil_kid, alg="RS256", signing_key=evil_key, header={"jku": f"{attacker.issuer}/jwks"}),
            issuer.mint(kid=evil_kid, alg="RS256", signing_key=evil_key, header={"x5u": f"{attacker.issuer}/jwks"}),
            issuer.mint(kid="../../../../etc/passwd", alg="RS256", signing_key=evil_key),
            issuer.mint(kid="' OR 1=1 --", alg="RS256", signing_key=evil_key),
            issuer.mint_raw_rs256({"crit": ["x-unknown"], "x-unknown": True}),
        ]
        for token in attacks:
            await assert_unauthenticated(authenticator, bearer(token))
        assert attacker.requests == {}
        # The raw minting itself is sound: the same path without `crit` verifies.
        assert (await authenticator.authenticate(bearer(issuer.mint_raw_rs256({"typ": "JWT"})))).user == "alice"
