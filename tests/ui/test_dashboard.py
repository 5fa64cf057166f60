"""The dashboard over HTTP (no browser): sessions and their cookies, the name prompt, the OIDC code flow with
PKCE against the local issuer (and what it refuses), CSRF and origin checks on writes, the same rights as
the API, the caller's jobs across clusters and partitions through the partitions registry, and the
configuration rules."""

from __future__ import annotations

import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from openapi_spec_validator import validate

from gateway import appkeys
from gateway.app import create_app
from gateway.config import ConfigError, Settings, load_settings
from gateway.web import schemas
from gateway.web.openapi import openapi_document
from tests.auth.issuer import LocalIssuer
from tests.conftest import PARTITION, Gateway, wait_until
from tests.service.backends_harness import MultiCluster, small_body
from tests.service.seed_bodies import minimal
from tests.ui.conftest import ADMIN_GROUP, CLIENT_ID, name_prompt_sign_in, oidc_sign_in


def _cookie(response: Any, name: str) -> Any:
    headers = [v for k, v in response.headers.items() if k.lower() == "set-cookie" and v.startswith(name + "=")]
    assert headers, f"no {name} cookie set"
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(headers[-1])
    return parsed[name]


async def _create(gw: Gateway, user: str, name: str, *, partition: str = PARTITION) -> str:
    answer = await gw.client.post(gw.jobs_url(partition), json=minimal(name), headers={"X-User": user})
    assert answer.status == 200, await answer.text()
    return str((await answer.json())["metadata"]["id"])


async def _session(gw: Gateway) -> dict[str, Any]:
    answer = await gw.client.get("/ui/api/session")
    assert answer.status == 200, await answer.text()
    return schemas.UiSession.model_validate(await answer.json()).model_dump()


async def test_pages_and_the_pages_json_need_a_session(ui_gateway: Any, gateway: Gateway) -> None:
    gw = await ui_gateway()
    page = await gw.client.get("/ui/jobs/c1/clever/abc", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == "/ui/login?next=/ui/jobs/c1/clever/abc"
    for path in ("/ui/api/jobs", "/ui/api/session", "/ui/api/clusters/c1/partitions/clever/tfjobs/abc/logs"):
        answer = await gw.client.get(path)
        body = await answer.json()
        assert answer.status == 401 and body["reason"] == "Unauthorized", body
        assert "WWW-Authenticate" in answer.headers
    # The dashboard is off unless enabled: /ui is just an unknown path then.
    off = await gateway.client.get("/ui", allow_redirects=False)
    assert off.status == 404 and (await off.json())["reason"] == "NotFound"


async def test_the_name_prompt_signs_in_with_a_strict_cookie(ui_gateway: Any) -> None:
    gw = await ui_gateway()
    prompt = await gw.client.get("/ui/login", allow_redirects=False)
    assert prompt.status == 200 and "Authentication is off" in await prompt.text()
    assert "script-src 'self'" in prompt.headers["Content-Security-Policy"]
    signin = _cookie(prompt, "cg_signin")
    assert signin["httponly"] and signin["samesite"] == "Lax" and signin["path"] == "/ui" and not signin["secure"]
    refused = await gw.client.post("/ui/login", data={"user": "alice", "csrfToken": "guess"}, allow_redirects=False)
    assert refused.status == 403 and (await refused.json())["details"]["field"] == "csrfToken"
    answer = await name_prompt_sign_in(gw, "alice", next_page="/ui/jobs/c1/clever/x")
    assert answer.headers["Location"] == "/ui/jobs/c1/clever/x"
    session = _cookie(answer, "cg_session")
    assert session["httponly"] and session["samesite"] == "Lax" and session["path"] == "/ui"
    assert int(session["max-age"]) == gw.app[appkeys.SETTINGS].ui.session_seconds
    me = await _session(gw)
    assert me["user"] == "alice" and not me["isAdmin"] and me["authMode"] == "none" and me["clusters"] == ["c1"]


async def test_cookies_are_secure_outside_loopback_and_next_stays_on_the_dashboard(ui_gateway: Any) -> None:
    gw = await ui_gateway()
    prompt = await gw.client.get("/ui/login?next=https://evil.example/", headers={"Host": "clever.example"})
    assert _cookie(prompt, "cg_signin")["secure"]
    assert 'name="next" value="/ui"' in await prompt.text()
    for bad in ("//evil.example", "/ui/../api", "/uix", "https://evil.example/ui"):
        page = await gw.client.get(f"/ui/login?next={bad}")
        assert 'name="next" value="/ui"' in await page.text(), bad


async def test_writes_need_the_csrf_token_and_our_origin(ui_gateway: Any) -> None:
    gw = await ui_gateway()
    job_id = await _create(gw, "alice", "to-delete")
    await name_prompt_sign_in(gw, "alice")
    csrf = (await _session(gw))["csrfToken"]
    url = f"/ui/api/clusters/c1/partitions/{PARTITION}/tfjobs/{job_id}"
    missing = await gw.client.delete(url)
    assert missing.status == 403 and "CSRF" in (await missing.json())["message"]
    elsewhere = await gw.client.delete(url, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert elsewhere.status == 403
    deleted = await gw.client.delete(url, headers={"X-CSRF-Token": csrf, "Origin": f"http://{gw.client.host}:{gw.client.port}"})
    assert deleted.status == 200, await deleted.text()
    assert (await deleted.json())["status"]["phase"] == "terminating"
    # Signing out needs the token too; afterwards the cookie is no session.
    out = await gw.client.post("/ui/logout", data={"csrfToken": csrf}, allow_redirects=False)
    assert out.status == 303 and out.headers["Location"] == "/ui/login?signedOut=1"
    assert (await gw.client.get("/ui/api/session")).status == 401


async def test_the_same_rights_as_the_api(ui_gateway: Any) -> None:
    gw = await ui_gateway()
    gw.sim.controllers.set_default_scenario("hold")
    alices = await _create(gw, "alice", "alices")
    await name_prompt_sign_in(gw, "bob")
    base = f"/ui/api/clusters/c1/partitions/{PARTITION}/tfjobs/{alices}"
    for path in (base, base + "/logs", base + "/events"):
        answer = await gw.client.get(path)
        assert answer.status == 404 and (await answer.json())["message"].startswith("job "), path
    listing = await (await gw.client.get("/ui/api/jobs")).json()
    assert listing["items"] == [] and listing["user"] == "bob"
    csrf = (await _session(gw))["csrfToken"]
    assert (await gw.client.delete(base, headers={"X-CSRF-Token": csrf})).status == 404
    # bob may not ask for alice's jobs; the answer names the partitions that refused.
    asked = await (await gw.client.get("/ui/api/jobs?user=alice")).json()
    assert asked["items"] == [] and asked["problems"] and "only your own" in asked["problems"][0]["message"]


async def test_a_tampered_or_foreign_cookie_is_no_session(ui_gateway: Any) -> None:
    gw = await ui_gateway()
    await name_prompt_sign_in(gw, "alice")
    jar = gw.client.session.cookie_jar
    value = next(c.value for c in jar if c.key == "cg_session")
    for forged in (value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"),
                   Fernet(Fernet.generate_key()).encrypt(b'{"u":"admin","g":[],"m":"none","c":"x"}').decode()):
        jar.clear()
        jar.update_cookies({"cg_session": forged}, gw.client.make_url("/ui"))
        assert (await gw.client.get("/ui/api/session")).status == 401


async def test_the_callers_jobs_across_partitions_admins_see_more(ui_gateway: Any) -> None:
    gw = await ui_gateway()
    ids = {await _create(gw, "alice", "a1"), await _create(gw, "alice", "a2", partition="default")}
    bobs = await _create(gw, "bob", "b1")
    registry = await gw.app[appkeys.STATE].partitions.of(["c1"])
    assert registry == {"c1": ["clever", "default"]}
    await name_prompt_sign_in(gw, "alice")
    mine = schemas.UiJobList.model_validate(await (await gw.client.get("/ui/api/jobs")).json())
    assert {j.metadata.id for j in mine.items} == ids and mine.problems == []
    assert [j.metadata.creationTime for j in mine.items] == sorted((j.metadata.creationTime for j in mine.items),
                                                                   reverse=True)
    gw.client.session.cookie_jar.clear()
    await name_prompt_sign_in(gw, "admin")
    assert (await _session(gw))["isAdmin"]
    everyone = await (await gw.client.get("/ui/api/jobs?user=*")).json()
    assert {j["metadata"]["id"] for j in everyone["items"]} == ids | {bobs}
    assert (await (await gw.client.get("/ui/api/jobs")).json())["items"] == []  # the admin's own: none
    bad = await gw.client.get("/ui/api/jobs?user=%D0%B0dmin")
    assert bad.status == 400


async def test_the_registry_comes_back_after_redis_loses_it(gateway: Gateway) -> None:
    gw = gateway
    await _create(gw, "alice", "kept")
    key = gw.key_names.partitions("c1")
    assert await gw.redis.smembers(key) == {PARTITION}
    await gw.redis.delete(key)
    gw.app[appkeys.SYNCS]["c1"].request_relist()

    async def registered() -> bool:
        return bool(await gw.redis.smembers(key) == {PARTITION})

    await wait_until(registered)


async def test_jobs_of_every_cluster() -> None:
    def with_ui(settings: Settings) -> Settings:
        return settings.model_copy(update={"ui": settings.ui.model_copy(update={"enabled": True})})

    async with MultiCluster(f"test:{uuid.uuid4().hex}:", cluster_ids=("to", "js"), settings_hook=with_ui) as mc:
        made = {cid: (await mc.create(cid, small_body(f"on-{cid}")))["metadata"]["id"] for cid in ("to", "js")}
        prompt = await mc.http.get("/ui/login")
        token = (await prompt.text()).split('name="csrfToken" value="')[1].split('"')[0]
        assert (await mc.http.post("/ui/login", data={"user": "alice", "csrfToken": token},
                                   allow_redirects=False)).status == 303
        listing = await (await mc.http.get("/ui/api/jobs")).json()
        assert {(j["metadata"]["cluster"], j["metadata"]["id"]) for j in listing["items"]} == set(made.items())
        assert {(p["cluster"], p["partition"]) for p in listing["partitions"]} == {("to", PARTITION),
                                                                                   ("js", PARTITION)}


async def test_oidc_code_flow_with_pkce(oidc_gateway: Any, issuer: LocalIssuer) -> None:
    gw = await oidc_gateway()
    issuer.groups["alice"] = [ADMIN_GROUP, "team-a"]
    answer, params = await oidc_sign_in(gw, issuer, "alice", next_page="/ui/jobs/c1/clever/x")
    assert answer.status == 303, await answer.text()
    assert answer.headers["Location"] == "/ui/jobs/c1/clever/x"
    assert params["client_id"] == [CLIENT_ID] and params["code_challenge_method"] == ["S256"]
    assert params["redirect_uri"] == [str(gw.client.make_url("/ui/callback"))]
    assert len(params["code_challenge"][0]) == 43 and params["nonce"] and params["state"]
    assert "openid" in params["scope"][0].split()
    me = await _session(gw)
    assert me["user"] == "alice" and me["isAdmin"] and me["authMode"] == "oidc"
    # Nothing of a token reaches the page: the session answer and the cookie hold none.
    assert not any("ey" in str(v)[:2] for v in me.values())
    assert issuer.requests["token"] == 1


async def test_oidc_sign_in_refusals(oidc_gateway: Any, issuer: LocalIssuer) -> None:
    gw = await oidc_gateway()
    # A callback nobody started here (no sign-in cookie): 400, nothing signed in.
    stray = await gw.client.get("/ui/callback?code=x&state=y", allow_redirects=False)
    assert stray.status == 400 and (await gw.client.get("/ui/api/session")).status == 401
    # The issuer refused the user.
    await gw.client.get("/ui/login", allow_redirects=False)
    denied = await gw.client.get("/ui/callback?error=access_denied&error_description=no", allow_redirects=False)
    assert denied.status == 401 and "access_denied" in (await denied.json())["message"]
    # A state that is not this browser's sign-in.
    await gw.client.get("/ui/login", allow_redirects=False)
    forged = await gw.client.get("/ui/callback?code=abc&state=not-mine", allow_redirects=False)
    assert forged.status == 400 and "state" in (await forged.json())["message"]
    # An ID token for another sign-in (nonce): refused although validly signed.
    issuer.id_token_overrides["nonce"] = "someone-elses"
    answer, _ = await oidc_sign_in(gw, issuer, "alice")
    assert answer.status == 401 and "nonce" in (await answer.json())["message"]
    issuer.id_token_overrides.clear()
    # An ID token for another client (aud): the gateway's own verifier refuses it.
    issuer.id_token_overrides["aud"] = "another-client"
    answer, _ = await oidc_sign_in(gw, issuer, "alice")
    assert answer.status == 401 and (await gw.client.get("/ui/api/session")).status == 401
    issuer.id_token_overrides.clear()
    # The name prompt does not exist in OIDC mode.
    assert (await gw.client.post("/ui/login", data={"user": "alice"})).status == 405


async def test_the_issuer_refuses_a_wrong_pkce_verifier(issuer: LocalIssuer) -> None:
    import aiohttp
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    redirect = "http://127.0.0.1:1/ui/callback"
    issuer.register_client(CLIENT_ID, redirect)
    verifier = "v" * 64
    fields = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": redirect, "scope": "openid",
              "state": "s", "nonce": "n", "code_challenge": create_s256_code_challenge(verifier),
              "code_challenge_method": "S256", "user": "alice"}
    async with aiohttp.ClientSession() as http:
        async def code() -> str:
            back = await http.post(f"{issuer.issuer}/auth", data=fields, allow_redirects=False)
            return back.headers["Location"].split("code=")[1].split("&")[0]

        token = {"grant_type": "authorization_code", "client_id": CLIENT_ID, "redirect_uri": redirect}
        wrong = await http.post(f"{issuer.issuer}/token", data={**token, "code": await code(), "code_verifier": "w" * 64})
        assert wrong.status == 400 and (await wrong.json())["error"] == "invalid_grant"
        right = await http.post(f"{issuer.issuer}/token", data={**token, "code": await code(), "code_verifier": verifier})
        assert right.status == 200 and "id_token" in await right.json()


def _settings(**ui: Any) -> dict[str, Any]:
    return {"auth": {"mode": "oidc", "oidc": {"issuer": "https://idp.example/realms/c", "audience": "cg"}},
            "clusters": [{"id": "c1", "server": "https://k8s.example", "token": "t"}], "ui": {"enabled": True, **ui}}


def test_oidc_dashboard_configuration_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ui.clientId is required"):
        load_settings(environ={}, base=_settings())
    with pytest.raises(ConfigError, match="must be listed in auth.oidc.audience"):
        load_settings(environ={}, base=_settings(clientId="dash", sessionKeyFile="/k"))
    with pytest.raises(ConfigError, match="ui.sessionKeyFile is required"):
        load_settings(environ={}, base=_settings(clientId="cg"))
    with pytest.raises(ConfigError, match="ui.publicUrl"):
        load_settings(environ={}, base=_settings(clientId="cg", sessionKeyFile="/k", publicUrl="http://clever.example"))
    bad = tmp_path / "keys"
    bad.write_text("not-a-key\n")
    settings = load_settings(environ={}, base=_settings(clientId="cg", sessionKeyFile=str(bad)))
    with pytest.raises(ConfigError, match="ui.sessionKeyFile: .* key 1 is not a Fernet key"):
        create_app(settings)
    document = openapi_document(load_settings(environ={}, base=_settings(clientId="cg", sessionKeyFile=str(bad))))
    validate(document)
    assert document["components"]["securitySchemes"]["session"]["in"] == "cookie"
    assert document["paths"]["/ui/api/jobs"]["get"]["security"] == [{"session": []}]
    delete = document["paths"]["/ui/api/clusters/{cid}/partitions/{partition}/tfjobs/{id}"]["delete"]
    assert any(p["name"] == "X-CSRF-Token" and p["required"] for p in delete["parameters"])


async def test_a_session_holds_on_every_replica_and_through_a_key_rotation(make_gateway: Any, tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    keys = tmp_path / "keys"
    keys.write_text(old + "\n")
    ui = {"enabled": True, "sessionKeyFile": str(keys)}
    first = await make_gateway(ui=ui, auth={"mode": "none"})
    await name_prompt_sign_in(first, "alice")
    cookie = next(c.value for c in first.client.session.cookie_jar if c.key == "cg_session")
    keys.write_text(f"{new}\n{old}\n")  # rotation: a new key seals, the old one still opens
    second = await make_gateway(ui=ui, auth={"mode": "none"})
    second.client.session.cookie_jar.update_cookies({"cg_session": cookie}, second.client.make_url("/ui"))
    assert (await _session(second))["user"] == "alice"
    keys.write_text(new + "\n")  # the old key retired: its sessions end
    third = await make_gateway(ui=ui, auth={"mode": "none"})
    third.client.session.cookie_jar.update_cookies({"cg_session": cookie}, third.client.make_url("/ui"))
    assert (await third.client.get("/ui/api/session")).status == 401
