"""The dashboard in a real headless Chromium (Debian's `/usr/bin/chromium`, driven by Playwright; never a
downloaded browser): signing in at the local OIDC issuer (authorization code + PKCE), a job created through
the legacy API appearing, its phase changing from running to failed with the reason, its log followed
live, its events, another user not seeing it, and delete with confirmation. Also the demo's name prompt.

Screenshots go to `build/screenshots/` (gitignored) for a person to look at. Every wait is bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.auth.issuer import LocalIssuer
from tests.conftest import PARTITION, Gateway
from tests.service.seed_bodies import minimal
from translators.naming import object_name

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield launched
        finally:
            await launched.close()


async def _context(browser: Browser) -> BrowserContext:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(WAIT_MS)
    return context


async def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def _sign_in_at_issuer(page: Page, base: str, issuer: LocalIssuer, user: str) -> None:
    await page.goto(base + "/ui")
    await page.wait_for_url(issuer.issuer + "/auth?*")  # the gateway sent the browser to the issuer
    await page.fill("#issuer-user", user)
    await page.click("#issuer-submit")
    await page.wait_for_url(base + "/ui")
    await expect(page.locator("#signed-in-user")).to_have_text(user)


async def test_sign_in_follow_a_failing_job_and_delete_it(oidc_gateway: Any, issuer: LocalIssuer,
                                                          browser: Browser) -> None:
    gw: Gateway = await oidc_gateway()
    gw.sim.controllers.set_default_scenario("hold")
    base = str(gw.client.make_url("")).rstrip("/")
    alice = await (await _context(browser)).new_page()
    await _sign_in_at_issuer(alice, base, issuer, "alice")
    cookie = next(c for c in await alice.context.cookies() if c["name"] == "cg_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert await alice.evaluate("document.cookie") == ""  # nothing of the session is visible to scripts

    # A job created through the legacy API, with alice's bearer token, shows up by itself.
    created = await gw.client.post(gw.jobs_url(), json=minimal("resnet", count="2"),
                                   headers={"Authorization": f"Bearer {issuer.mint(user='alice')}"})
    assert created.status == 200, await created.text()
    job_id = (await created.json())["metadata"]["id"]
    row = alice.locator(f'tr[data-job-id="{job_id}"]')
    await expect(row.locator(".phase")).to_have_text("running")
    await _shot(alice, "1-jobs-list")

    await row.locator("a").click()
    await alice.wait_for_url(f"{base}/ui/jobs/c1/{PARTITION}/{job_id}")
    await expect(alice.locator("h1 .phase")).to_have_text("running")
    await expect(alice.locator("#replicas tbody tr")).to_have_count(2)
    pod = await alice.locator('#replicas tr[data-replica="worker-0"] td').nth(1).inner_text()
    gw.sim.store.append_log(PARTITION, pod, "tensorflow", "epoch 1 loss 0.91\nepoch 2 loss 0.64\n")
    await alice.check("#log-follow")
    await expect(alice.locator("#log")).to_contain_text("epoch 2 loss 0.64")
    gw.sim.store.append_log(PARTITION, pod, "tensorflow", "epoch 3 loss 0.52\n")
    await expect(alice.locator("#log")).to_contain_text("epoch 3 loss 0.52")  # followed, not reloaded
    await expect(alice.locator("#log-status")).to_contain_text("following")
    await _shot(alice, "2-job-running-log-followed")

    # The job fails: the page tells why without a reload.
    gw.sim.controllers.set_job_scenario(PARTITION, object_name("resnet", job_id), "fail:exit=3,after=0")
    await expect(alice.locator("h1 .phase")).to_have_text("failed")
    await expect(alice.locator("#status")).to_contain_text("exit")
    await expect(alice.locator('#replicas tr[data-replica="worker-0"]')).to_contain_text("3")
    await expect(alice.locator("#events-table")).to_contain_text("Started")
    await _shot(alice, "3-job-failed-reason-and-events")

    # Another user sees neither the job in the list nor its page.
    bob = await (await _context(browser)).new_page()
    await _sign_in_at_issuer(bob, base, issuer, "bob")
    await expect(bob.locator("#job-count")).to_have_text("0 of 0 job(s)")
    await expect(bob.locator(f'tr[data-job-id="{job_id}"]')).to_have_count(0)
    await bob.goto(f"{base}/ui/jobs/c1/{PARTITION}/{job_id}")
    await expect(bob.locator("#job-notice")).to_contain_text(f"job {job_id} not found")
    await expect(bob.locator("#log")).to_have_count(0)
    await _shot(bob, "4-another-user-sees-nothing")

    # Delete, with confirmation: cancel first, then confirm.
    await alice.click("#delete-job")
    await expect(alice.locator("#confirm-delete")).to_be_visible()
    await expect(alice.locator("#confirm-text")).to_contain_text(job_id)
    await _shot(alice, "5-delete-confirmation")
    await alice.click("#confirm-cancel")
    await expect(alice.locator("h1 .phase")).to_have_text("failed")
    await alice.click("#delete-job")
    await alice.click("#confirm-ok")
    await alice.wait_for_url(f"{base}/ui?deleted=resnet")
    await expect(alice.locator("#deleted-notice")).to_contain_text("resnet was deleted")
    await expect(alice.locator(f'tr[data-job-id="{job_id}"]')).to_have_count(0)
    await _shot(alice, "6-after-delete")
    gone = await gw.client.get(f"{gw.jobs_url()}/{job_id}",
                               headers={"Authorization": f"Bearer {issuer.mint(user='alice')}"})
    assert gone.status == 404


async def test_the_demo_name_prompt(ui_gateway: Any, browser: Browser) -> None:
    gw: Gateway = await ui_gateway()
    base = str(gw.client.make_url("")).rstrip("/")
    page = await (await _context(browser)).new_page()
    await page.goto(base + "/ui")
    await page.wait_for_url(base + "/ui/login?next=/ui")
    await expect(page.locator(".warning")).to_contain_text("Authentication is off")
    await _shot(page, "0-demo-name-prompt")
    await page.fill("#user", "alice")
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/ui")
    await expect(page.locator("#signed-in-user")).to_have_text("alice")
    await expect(page.locator("#jobs tbody")).to_contain_text("No jobs yet")
    await page.click("#sign-out")
    await page.wait_for_url(base + "/ui/login?signedOut=1")
    await expect(page.locator("main")).to_contain_text("You are signed out")
