"""`clever-gateway check` as an operator runs it (a process of its own) against KubeSim over HTTPS and the
real Redis: a table with one row per check, exit 0 only when all pass; and start-up errors of `serve` as one
line naming the key at fault."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.auth.issuer import LocalIssuer
from tests.conftest import CLUSTER, REDIS_URL, RUNTIMES

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, sim: Any, *, token_file: Path, redis_url: str = REDIS_URL,
            backend: str = "training-operator") -> Path:
    data = {
        "auth": {"mode": "none"},
        "redis": {"url": redis_url, "keyPrefix": "test:check:", "socketTimeoutSeconds": 1},
        "retry": {"attempts": 1},
        "clusters": [{"id": CLUSTER, "server": sim.url, "tokenFile": str(token_file), "caFile": sim.ca_file,
                      "backend": backend, "runtimes": RUNTIMES, "requestTimeoutSeconds": 5}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def _run(*args: str) -> tuple[int, str, str]:
    """The command in a process of its own; the event loop keeps serving KubeSim meanwhile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEVER_GATEWAY", "OTEL_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _rows(out: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(target, check) -> (result, detail), parsed from the table by its header's columns."""
    lines = out.splitlines()
    header = lines[0]
    starts = [header.index(name) for name in ("TARGET", "CHECK", "RESULT", "DETAIL")]
    rows = {}
    for line in lines[1:]:
        if line.startswith(tuple("0123456789")):
            break  # the summary line
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[(cells[0], cells[1])] = (cells[2], cells[3])
    return rows


async def test_check_passes_on_a_cluster_that_has_it_all(tmp_path: Path, kubesim: Any) -> None:
    token = tmp_path / "token"
    token.write_text(kubesim.token)
    code, out, err = await _run("check", "--config", str(_config(tmp_path, kubesim, token_file=token)))
    assert code == 0, (out, err)
    rows = _rows(out)
    assert rows[("clusters.0.tokenFile", "file readable")][0] == "ok"
    assert rows[("redis (standalone)", "PING")][0] == "ok"
    assert rows[(f"cluster {CLUSTER}", "API server")][0] == "ok"
    assert rows[(f"cluster {CLUSTER}", "serves tfjobs.kubeflow.org/v1")] == ("ok", "backend training-operator")
    assert rows[(f"cluster {CLUSTER}", "rbac tfjobs.kubeflow.org")] == (
        "ok", "allowed: get, list, watch, create, update, patch, delete")
    assert rows[(f"cluster {CLUSTER}", "rbac pods/log")][0] == "ok"
    assert all(result == "ok" for result, _ in rows.values())
    assert out.splitlines()[-1] == f"{len(rows)} of {len(rows)} checks passed"
    assert err == ""


async def test_check_names_what_is_missing(tmp_path: Path, kubesim: Any) -> None:
    # The gateway's identity may read its jobs and pods but change nothing; the backend's CRD is not
    # served; Redis is not there.
    kubesim.server.token_identities["limited-token"] = ("system:serviceaccount:cg:gateway", [])
    kubesim.policy.allow(user="system:serviceaccount:cg:gateway", verb="get")
    kubesim.policy.allow(user="system:serviceaccount:cg:gateway", verb="list")
    kubesim.policy.allow(user="system:serviceaccount:cg:gateway", verb="watch")
    kubesim.faults.fail_next(1, 404, method="GET", path="/apis/kubeflow.org/v1", reason="NotFound")
    token = tmp_path / "token"
    token.write_text("limited-token")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    config = _config(tmp_path, kubesim, token_file=token, redis_url=f"redis://127.0.0.1:{closed}/0")
    code, out, err = await _run("check", "--config", str(config))
    assert code == 1, (out, err)
    rows = _rows(out)
    result, detail = rows[("redis (standalone)", "PING")]
    assert result == "FAILED" and str(closed) in detail
    assert rows[(f"cluster {CLUSTER}", "API server")][0] == "ok"
    assert rows[(f"cluster {CLUSTER}", "serves tfjobs.kubeflow.org/v1")] == (
        "FAILED", "kubeflow.org/v1 is not served: is the TFJob CRD installed?")
    assert rows[(f"cluster {CLUSTER}", "rbac tfjobs.kubeflow.org")] == (
        "FAILED", "denied: create, update, patch, delete (allowed: get, list, watch)")
    assert rows[(f"cluster {CLUSTER}", "rbac pods")][0] == "ok"
    assert rows[(f"cluster {CLUSTER}", "rbac tfjobs/status.kubeflow.org")][0] == "ok"
    failed = sum(result == "FAILED" for result, _ in rows.values())
    assert out.splitlines()[-1] == f"{len(rows) - failed} of {len(rows)} checks passed; {failed} FAILED"
    assert "Traceback" not in out + err


async def test_check_fetches_the_issuers_keys_with_auth_oidc(tmp_path: Path, kubesim: Any) -> None:
    """The OIDC row: ok once discovery and the key set were fetched; FAILED with the reason when the key
    set cannot be had, and when the issuer does not answer at all."""
    token = tmp_path / "token"
    token.write_text(kubesim.token)
    async with LocalIssuer() as issuer:
        config = _config(tmp_path, kubesim, token_file=token)
        data = yaml.safe_load(config.read_text())
        data["auth"] = {"mode": "oidc", "oidc": {"issuer": issuer.issuer, "audience": issuer.audience}}
        config.write_text(yaml.safe_dump(data))
        code, out, err = await _run("check", "--config", str(config))
        assert code == 0, (out, err)
        assert _rows(out)[(issuer.issuer, "discovery + JWKS")] == ("ok", "signing keys fetched")
        assert issuer.requests["discovery"] >= 1 and issuer.jwks_requests >= 1

        issuer.jwks_status = 503
        code, out, err = await _run("check", "--config", str(config))
        assert code == 1, (out, err)
        assert _rows(out)[(issuer.issuer, "discovery + JWKS")] == ("FAILED", "key set: HTTP 503")
        assert out.splitlines()[-1].endswith("; 1 FAILED")

        await issuer.stop()
        code, out, err = await _run("check", "--config", str(config))
        assert code == 1, (out, err)
        result, detail = _rows(out)[(issuer.issuer, "discovery + JWKS")]
        assert result == "FAILED" and detail.startswith("discovery document: "), detail
        assert "Traceback" not in out + err


async def test_check_of_a_missing_token_file_and_an_unreachable_cluster(tmp_path: Path, kubesim: Any) -> None:
    config = _config(tmp_path, kubesim, token_file=tmp_path / "absent")
    data = yaml.safe_load(config.read_text())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    data["clusters"].append({**data["clusters"][0], "id": "c2", "server": f"https://127.0.0.1:{closed}",
                             "tokenFile": None, "token": "t"})
    config.write_text(yaml.safe_dump(data))
    code, out, err = await _run("check", "--config", str(config))
    assert code == 1, (out, err)
    rows = _rows(out)
    assert rows[("clusters.0.tokenFile", "file readable")] == (
        "FAILED", f"{tmp_path / 'absent'}: No such file or directory")
    result, detail = rows[(f"cluster {CLUSTER}", "credentials")]
    assert result == "FAILED" and f"cannot read the token file {tmp_path / 'absent'}" in detail
    assert rows[("cluster c2", "API server")] == (
        "FAILED", "cluster c2: API server unreachable (resource and RBAC checks skipped)")
    assert "Traceback" not in out + err


async def test_serve_with_a_missing_token_file_is_one_line(tmp_path: Path, kubesim: Any) -> None:
    config = _config(tmp_path, kubesim, token_file=tmp_path / "absent")
    for args in (("serve", "--config", str(config)), ("serve", "--config", str(config), "--check")):
        code, out, err = await _run(*args)
        assert code == 2, (out, err)
        assert "Traceback" not in err and out == ""
        assert f"clusters.0.tokenFile: {tmp_path / 'absent'}: No such file or directory" in err
        assert err.count("\n") == 2  # the heading line and the one file
