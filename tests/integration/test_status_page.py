"""The coordinator's status page in a real browser (Debian's headless Chromium driven by
Playwright, which does not download a browser of its own): a person sees the members with
their roles and health, the leader, and a removal appear as an event after a member is
killed. The screenshot is kept under the test's tmp dir (its path is printed)."""

from __future__ import annotations

import os
import shutil

import pytest

from observability_helpers import start_observed

CHROMIUM = os.environ.get("CATENA_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SEEN_TIMEOUT_MS = 20_000

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'catena[test]' brings Playwright")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


def test_status_page_shows_members_and_a_removal(make_cluster, tmp_path):
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    c, chain, metrics = start_observed(make_cluster)
    c.client(chain[0]).set("a", "1")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(f"http://{metrics[c.coordinator]}/")
            rows = page.locator("tr.member")
            sync_api.expect(rows).to_have_count(3, timeout=SEEN_TIMEOUT_MS)
            for addr, role in zip(chain, ("head", "middle", "tail")):
                row = page.locator(f'tr.member[data-addr="{addr}"]')
                sync_api.expect(row.locator("td.role")).to_have_text(role)
                sync_api.expect(row.locator("td.health")).to_have_text("ok")
            sync_api.expect(page.locator("#leader")).to_have_text(c.coordinator)
            sync_api.expect(page.locator("#role")).to_have_text("leader")

            c.kill9(chain[1])
            sync_api.expect(page.locator("#events li.removed")).to_contain_text(
                f"{chain[1]} failed its probes and was removed", timeout=SEEN_TIMEOUT_MS)
            sync_api.expect(rows).to_have_count(2, timeout=SEEN_TIMEOUT_MS)
            sync_api.expect(page.locator(f'tr.member[data-addr="{chain[1]}"]')).to_have_count(0)
            sync_api.expect(page.locator(f'tr.member[data-addr="{chain[2]}"] td.role')).to_have_text("tail")
            shot = tmp_path / "status-page.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"status page screenshot: {shot}")
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
