"""Acceptance for the counsellors' console, in real headless Chromium (Debian's package, driven by
Playwright) against the real gateway, Rasa and action server, with Telegram through the fake Bot API.

A Telegram user who fears being killed if sent back appears at the top of the queue as urgent; a
counsellor logs in, claims, replies (the reply reaches the fake Bot API), sees the person's next
message arrive live, and resolves (the bot answers again). HTML in a message is shown as text.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bot.console.auth import create_counsellor
from bot.content import ContentStore
from bot.db import Database
from tests.fakes.platforms import telegram_text

pytestmark = pytest.mark.slow

PASSWORD = "a long console password 42"
CHAT = 8812345
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: `make install` installs Debian's chromium package (as root)")


def logged_in_page(p, base: str, username: str, dialogs: list):
    """A console page in headless Chromium, logged in. bypass_csp: text must never run even without
    the page's Content-Security-Policy; any dialog (alert) is recorded."""
    browser = p.chromium.launch(executable_path=chromium_path(), headless=True,
                                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    page = browser.new_context(bypass_csp=True, viewport={"width": 1400, "height": 900}).new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{base}/console")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login button[type=submit]")
    return browser, page


def telegram(servers, update_id: int, text: str, language: str = "en") -> None:
    response = httpx.post(f"{servers['url']}/telegram/webhook", json=telegram_text(update_id, CHAT, text, language),
                          headers={"X-Telegram-Bot-Api-Secret-Token": servers["env"]["TELEGRAM_WEBHOOK_SECRET"]},
                          timeout=30)
    assert response.status_code == 200


def test_urgent_telegram_case_claimed_answered_and_resolved_in_the_browser(servers, platforms):
    from playwright.sync_api import expect, sync_playwright

    db = Database(servers["settings"].database_url, keys=servers["settings"].data_keys)
    create_counsellor(db, "leila", PASSWORD, role="supervisor", languages="en,ar", display_name="Leila")
    content = ContentStore()
    base = servers["url"].replace("127.0.0.1", "localhost")  # a secure context for the Secure cookie
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        dialogs = []
        browser, page = logged_in_page(p, base, "leila", dialogs)
        expect(page.locator("#who")).to_contain_text("Leila")
        expect(page.locator("#login")).to_be_hidden()

        # 1. The person writes on Telegram; the case appears on top, urgent, without a reload.
        sent = time.monotonic()
        telegram(servers, 700001, "they will kill me if i go back")
        top = page.locator("#queue li").first
        expect(top.locator(".priority")).to_have_text("urgent", timeout=10_000)
        latency = time.monotonic() - sent
        safety = content.render("utter_safety_fear_of_harm", "en").text
        assert platforms.wait_for(lambda: safety in platforms.telegram_texts(CHAT), timeout=20)
        page.screenshot(path=str(SCREENSHOTS / "console-queue.png"), full_page=True)

        # 2. Claim and reply; the reply reaches the person's Telegram.
        top.locator("button").click()
        page.click("#claim")
        expect(page.locator("#reply-form")).to_be_visible()
        joined = content.render("utter_counsellor_joined", "en").text
        assert platforms.wait_for(lambda: joined in platforms.telegram_texts(CHAT), timeout=10)
        page.fill("#reply", "I am here with you. Are you safe right now?")
        page.click("#reply-form button[type=submit]")
        assert platforms.wait_for(lambda: "I am here with you. Are you safe right now?" in platforms.telegram_texts(CHAT),
                                  timeout=10)

        # 3. The person's next message shows up live (no reload); HTML stays text.
        before_rasa = len(platforms.telegram_texts(CHAT))
        sent = time.monotonic()
        telegram(servers, 700002, 'yes <img src=x onerror="alert(1)"> <b>bold</b>')
        message = page.locator("#transcript li.in .text").last
        expect(message).to_have_text('yes <img src=x onerror="alert(1)"> <b>bold</b>', timeout=5_000)
        live = time.monotonic() - sent
        assert page.locator("#transcript img").count() == 0 and page.locator("#transcript b").count() == 0
        telegram(servers, 700003, "أنا خائف جداً", language="ar")
        arabic = page.locator("#transcript li.in .text").last
        expect(arabic).to_have_text("أنا خائف جداً", timeout=5_000)
        assert arabic.evaluate("e => getComputedStyle(e).direction") == "rtl"
        time.sleep(1.0)
        assert len(platforms.telegram_texts(CHAT)) == before_rasa  # the bot stayed silent
        page.locator("#transcript li.in .mark").first.click()
        expect(page.locator("#transcript li.misunderstood")).to_have_count(1)
        page.locator("#transcript").evaluate("e => { e.scrollTop = e.scrollHeight; }")
        page.screenshot(path=str(SCREENSHOTS / "console-case.png"), full_page=True)

        # 4. Resolve: the person is told, and the bot answers again.
        page.click("#resolve")
        back = content.render("utter_handoff_resolved", "en").text
        assert platforms.wait_for(lambda: back in platforms.telegram_texts(CHAT), timeout=10)
        count = len(platforms.telegram_texts(CHAT))
        telegram(servers, 700004, "what are my options")
        options = content.render("utter_options", "en").text
        assert platforms.wait_for(lambda: options in platforms.telegram_texts(CHAT)[count:], timeout=20)
        assert dialogs == []
        browser.close()
    db.dispose()
    assert latency < 5, latency
    assert live < 1.5, live
    print(f"\nconsole e2e: urgent case on screen {latency:.2f} s after the Telegram update "
          f"(includes Rasa's answer); a new message on screen {live:.2f} s after it was posted")


def test_a_maintainer_labels_a_redacted_message_in_the_browser(servers):
    from playwright.sync_api import expect, sync_playwright

    from bot.db import ReviewItem
    from bot.review import text_hash

    db = Database(servers["settings"].database_url, keys=servers["settings"].data_keys)
    create_counsellor(db, "rami", PASSWORD, role="maintainer", languages="ar", display_name="Rami")
    with db.session() as s:
        s.add(ReviewItem(language="ar", text="اسمي <NAME> وبدي ارجع على <PLACE> <img src=x onerror=alert(1)>",
                         text_hash=text_hash("ar", "x-e2e"), source="misunderstood", predicted_intent="greet",
                         confidence=41))
    base = servers["url"].replace("127.0.0.1", "localhost")
    with sync_playwright() as p:
        dialogs = []
        browser, page = logged_in_page(p, base, "rami", dialogs)
        expect(page.locator("#review-pane")).to_be_visible()
        expect(page.locator("#queue-pane")).to_be_hidden()  # maintainers read no cases
        row = page.locator("#review tbody tr", has_text="<NAME>")
        expect(row).to_have_count(1)
        assert row.locator("td.text").evaluate("e => getComputedStyle(e).direction") == "rtl"
        assert page.locator("#review img").count() == 0
        row.locator("select").select_option("ask_avrr_process")
        page.screenshot(path=str(SCREENSHOTS / "console-review.png"), full_page=True)
        row.locator("button").click()
        expect(row).to_have_count(0)
        assert dialogs == []
        browser.close()
    with db.session() as s:
        item = s.scalars(select(ReviewItem).where(ReviewItem.text_hash == text_hash("ar", "x-e2e"))).one()
    assert (item.status, item.label, item.reviewer) == ("labelled", "ask_avrr_process", "rami")
    db.dispose()
