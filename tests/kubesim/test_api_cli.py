"""`python -m kubesim`: starts on the given port, prints URL and CA, writes a kubeconfig, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from pathlib import Path

import aiohttp
import yaml


async def test_cli_serves_and_writes_a_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kubesim", "--port", "0", "--token", "cli-token", "--namespaces", "alpha,beta",
        "--tfjob-operator", "tf-operator", "--time-scale", "0.01", "--kubeconfig", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        lines: list[str] = []
        while not any(line.startswith("kubeconfig:") for line in lines):
            line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
            assert line, (await process.stderr.read()).decode() if process.stderr else "no output"
            lines.append(line.decode().strip())
        url = lines[0].removeprefix("kubesim listening on ")
        ca_file = lines[1].removeprefix("CA certificate: ")
        assert url.startswith("https://127.0.0.1:")
        config = yaml.safe_load(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == url
        assert config["users"][0]["user"]["token"] == "cli-token"
        context = ssl.create_default_context(cafile=ca_file)
        async with aiohttp.ClientSession(headers={"Authorization": "Bearer cli-token"}) as session, \
                session.get(url + "/api/v1/namespaces", ssl=context) as response:
            names = [n["metadata"]["name"] for n in (await response.json())["items"]]
        assert names == ["alpha", "beta"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
