"""The dashboard in a real browser (Debian's Chromium, driven by Playwright): the plans list
shows a running plan; its page draws the step graph; the event button (after its confirmation)
reaches the suspended step; the page follows the plan to its end without a reload; the step's
page shows what the step printed. Screenshots go to ARTEFACTS.

Usage: dashboard.py BASE_URL PLAN_ID ARTEFACTS
"""

import sys

from playwright.sync_api import expect, sync_playwright


def main(base: str, plan: str, artefacts: str) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        page.goto(base + "/")
        row = page.locator(f'tr[data-plan="{plan}"]')
        expect(row).to_be_visible()
        expect(row.locator(".badge").first).to_have_text("running")
        page.screenshot(path=f"{artefacts}/dashboard-plans.png", full_page=True)

        page.goto(f"{base}/plans/{plan}")
        expect(page.locator('svg.graph g[data-step="approve"]')).to_have_class("step s-suspended")
        expect(page.locator('svg.graph g[data-step="greet"]')).to_have_class("step s-success")
        expect(page.locator("svg.graph path.edge")).to_have_count(1)
        expect(page.locator("#plan-state")).to_have_text("running")
        page.screenshot(path=f"{artefacts}/dashboard-plan-waiting.png", full_page=True)

        # Send the event with the button; the confirmation is accepted.
        confirmations = []

        def confirm(dialog):
            confirmations.append(dialog.message)
            dialog.accept()

        page.on("dialog", confirm)
        form = page.locator('tr[data-step="approve"] form.event')
        form.locator('input[name="data"]').fill('{"approver": "browser"}')
        form.locator("button").click()
        # The page follows the plan to its end by itself (server-sent events, no reload).
        expect(page.locator("#plan-state")).to_have_text("stopped", timeout=15000)
        expect(page.locator("#plan-result")).to_have_text("success")
        expect(page.locator('svg.graph g[data-step="approve"]')).to_have_class("step s-success")
        expect(page.locator("#toast")).to_contain_text("event delivered")
        assert confirmations and "approve" in confirmations[0], confirmations
        page.screenshot(path=f"{artefacts}/dashboard-plan-done.png", full_page=True)

        page.goto(f"{base}/plans/{plan}/steps/greet")
        expect(page.locator("#logs")).to_contain_text("hello browser", timeout=10000)
        page.screenshot(path=f"{artefacts}/dashboard-step.png", full_page=True)

        for path in ["/jobs", "/workers", "/nodes"]:
            page.goto(base + path)
            expect(page.locator("main h1")).to_be_visible()
        expect(page.locator("section.node ul.tree")).to_contain_text("http")
        page.screenshot(path=f"{artefacts}/dashboard-nodes.png", full_page=True)

        assert not errors, errors
        browser.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
