"""The web page, the CLI over the running gateway and the HTTP limits, in the namespace lab.

Real peers only: avahi-daemon publishers on three VLANs, the gateway as a process, Debian's
chromium driven by chromedriver (selenium) in the router namespace, where the gateway's HTTP
surface listens on loopback with a bearer token. The browser runs in a worker thread that has
entered that namespace, so chromedriver and chromium (its children) live there too.

Policy: iot's printers are visible to trusted (``printers-for-trusted``); nothing else crosses.
The screenshots are test artefacts under the test's tmp dir; WEB_SCREENSHOT_DIR, when set,
receives copies (docs/screenshot.png is made so).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bridge import const
from bridge.web.client import fetch
from netlab.lab import (
    AvahiPublisher,
    GatewayProcess,
    Lab,
    enter_netns,
    gateway_config,
    netns_socket,
    poll_until,
)
from netlab.mdns_probe import http_get
from tests.support.cli import run_module

pytestmark = [pytest.mark.lab, pytest.mark.timeout(300)]

T = TypeVar("T")
TOKEN = "lab-token-0123456789abcdef"
URL = "http://127.0.0.1:9353"
POLICIES = """\
apiVersion: mdnsgateway.io/v1alpha1
kind: ServicePolicy
metadata: {name: printers-for-trusted}
spec:
  from: [iot]
  to: [trusted]
  services: [_ipp._tcp]
"""
PRINTER, NAS, SPEAKER = "Lab Printer", "Trusted NAS", "Guest Speaker"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Browser:
    """Headless chromium in namespace ``ns``: every call runs in one thread that entered it."""

    def __init__(self, ns: str, profile: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.pool = ThreadPoolExecutor(1, initializer=enter_netns, initargs=(ns,))
        opts = webdriver.ChromeOptions()
        opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1400"]:
            opts.add_argument(flag)
        driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
        self.driver = self.run(lambda: webdriver.Chrome(service=Service(driver), options=opts))

    def run(self, fn: Callable[[], T], timeout: float = 60.0) -> T:
        return self.pool.submit(fn).result(timeout)

    def js(self, script: str, *args: Any) -> Any:
        return self.run(lambda: self.driver.execute_script(script, *args))

    def wait_js(self, script: str, timeout: float = 20.0, what: str = "") -> Any:
        """Poll ``script`` (returning a value) until it is truthy, within ``timeout``."""
        box: list[Any] = []

        def check() -> bool:
            box[:] = [self.js(script)]
            return bool(box[0])

        def page() -> str:
            text = self.js("return document.body.innerText")
            logs = self.run(lambda: self.driver.get_log("browser"))
            return f"page: {what or script}; it shows:\n{text[:3000]}\nconsole: {logs}"

        poll_until(check, timeout, interval=0.2, message=page)
        return box[0]

    def screenshot(self, path: Path, width: int, height: int) -> None:
        def shot() -> None:
            self.driver.set_window_size(width, height)
            self.driver.save_screenshot(str(path))

        self.run(shot)

    def close(self) -> None:
        try:
            self.run(self.driver.quit)
        finally:
            self.pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def world(lab: Lab) -> Iterator[dict[str, Any]]:
    work = Path(lab.workdir)
    (work / "web-policies").mkdir(exist_ok=True)
    (work / "web-policies" / "printers.yaml").write_text(POLICIES)
    token_file = work / "web-token"
    token_file.write_text(TOKEN + "\n")
    pubs = {
        "iot": AvahiPublisher(lab, lab.hosts["iot1"], host_name="labprinter"),
        "trusted": AvahiPublisher(lab, lab.hosts["trusted1"], host_name="nas"),
        "guest": AvahiPublisher(lab, lab.hosts["guest1"], host_name="speaker"),
    }
    pubs["iot"].add_service(PRINTER, "_ipp._tcp", 631, ["rp=ipp/print", "ty=Lab Printer"])
    pubs["trusted"].add_service(NAS, "_smb._tcp", 445)
    pubs["guest"].add_service(SPEAKER, "_raop._tcp", 7000, ["am=Speaker"])
    for pub in pubs.values():
        pub.start()
    for pub in pubs.values():
        pub.wait_running()
    config = gateway_config(
        lab,
        policies=str(work / "web-policies"),
        http={"listen": "127.0.0.1:9353", "token_file": str(token_file)},
    )
    gw = GatewayProcess(lab, config)
    gw.start()
    gw.wait_ready()
    world = {"gw": gw, "pubs": pubs, "token_file": token_file}
    ask = gateway_asker(lab)

    def all_seen() -> bool:
        services = ask("/api/services", {})
        held = {(v, s["instance"]) for v, e in services.items() for s in e["services"]}
        return {("iot", PRINTER), ("trusted", NAS), ("guest", SPEAKER)} <= held

    poll_until(all_seen, 30.0, interval=0.2, message=lambda: "the gateway to learn the services")
    yield world
    gw.stop()
    for pub in pubs.values():
        pub.stop()


def gateway_asker(lab: Lab) -> Callable[[str, dict[str, str]], Any]:
    """GET the gateway's JSON from inside the router namespace, with the token."""
    pool = ThreadPoolExecutor(1, initializer=enter_netns, initargs=(lab.gw,))

    def ask(path: str, query: dict[str, str]) -> Any:
        return pool.submit(fetch, URL, path, query, TOKEN).result(30.0)

    return ask


@pytest.fixture(scope="module")
def browser(lab: Lab, world: dict[str, Any]) -> Iterator[Browser]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium and chromium-driver are needed (make test installs them)")
    profile = tempfile.mkdtemp(prefix="chromium-", dir=lab.workdir)
    b = Browser(lab.gw, profile)
    yield b
    b.close()


def _keep(path: Path, name: str) -> None:
    target = os.environ.get("WEB_SCREENSHOT_DIR")
    if target:
        shutil.copy(path, Path(target) / name)


ROWS = """return [...document.querySelectorAll('tr[data-instance]')].map(
  (r) => [r.closest('.vlan').dataset.vlan, r.dataset.instance,
          [...r.cells].map((c) => c.textContent)]);"""
CELL = """const c = document.querySelector(
  `td.cell[data-view="${arguments[0]}"][data-vlan="${arguments[1]}"][data-type="${arguments[2]}"]`);
return c && [c.dataset.visible, c.dataset.decidedBy, c.textContent];"""


def test_the_page_shows_each_vlans_services_and_the_policy_that_decided(
    browser: Browser, tmp_path: Path
) -> None:
    browser.run(lambda: browser.driver.get(f"{URL}/?token={TOKEN}"))
    browser.wait_js(
        "return document.querySelectorAll('tr[data-instance]').length >= 3",
        what="the three services listed",
    )
    rows = {(vlan, inst): cells for vlan, inst, cells in browser.js(ROWS)}
    # each service on its own VLAN, and on no other (the router's store is per VLAN)
    assert set(rows) == {("iot", PRINTER), ("trusted", NAS), ("guest", SPEAKER)}, rows
    stype, inst, host, addrs, port, txt, first, ttl = rows[("iot", PRINTER)]
    assert (stype, inst, host, port) == ("_ipp._tcp", PRINTER, "labprinter.local.", "631")
    assert lab_address_on(addrs, "10.20.0.") and "rp=ipp/print" in txt
    assert first.endswith("ago") and ttl.endswith(" s")
    assert browser.js("return document.getElementById('status').textContent") == "live"
    # the matrix: trusted sees iot's printers by the policy; guest by nothing; iot its own
    assert browser.js(CELL, "trusted", "iot", "_ipp._tcp")[:2] == ["true", "printers-for-trusted"]
    assert browser.js(CELL, "guest", "iot", "_ipp._tcp")[:2] == [
        "false",
        "no allow policy (default)",
    ]
    assert browser.js(CELL, "iot", "iot", "_ipp._tcp")[:2] == ["true", "own VLAN (default)"]
    assert browser.js(CELL, "trusted", "guest", "_raop._tcp")[0] == "false"
    # a cell links to its explanation: why does guest not see the printer?
    browser.js(
        'document.querySelector(\'td.cell[data-view="guest"][data-vlan="iot"]'
        '[data-type="_ipp._tcp"] a\').click()'
    )
    text = browser.wait_js(
        "const t = document.getElementById('explanation-text').textContent;"
        "return t.includes('held on iot') && t",
        what="the explanation",
    )
    assert "view guest sees _ipp._tcp from VLAN iot: no" in text, text
    assert "Lab Printer (last announced" in text and "no policy has iot (or *) in from" in text
    wide, phone = tmp_path / "page.png", tmp_path / "page-phone.png"
    browser.screenshot(wide, 1280, 1400)
    browser.screenshot(phone, 390, 1600)
    assert wide.stat().st_size > 20_000 and phone.stat().st_size > 10_000
    # readable on a phone: nothing wider than the screen but the scrolling tables
    overflow = browser.js("return document.documentElement.scrollWidth")
    assert overflow <= 390, overflow
    browser.js("window.scrollTo(0, 0)")  # the README's picture: the page as it opens
    browser.screenshot(wide, 1280, 1400)
    _keep(wide, "screenshot.png")
    _keep(phone, "screenshot-phone.png")


def lab_address_on(addresses: str, prefix: str) -> bool:
    return any(a.strip().startswith(prefix) for a in addresses.split(","))


def test_a_publisher_stopping_updates_the_page_live(
    browser: Browser, world: dict[str, Any]
) -> None:
    browser.run(lambda: browser.driver.get(f"{URL}/?token={TOKEN}"))
    browser.wait_js(
        f"return !!document.querySelector('tr[data-instance=\"{SPEAKER}\"]')",
        what="the speaker listed",
    )
    browser.js("window.notReloaded = true;")
    world["pubs"]["guest"].stop()  # avahi says goodbye
    browser.wait_js(
        f"return !document.querySelector('tr[data-instance=\"{SPEAKER}\"]')",
        timeout=10.0,
        what="the speaker gone from the page",
    )
    assert browser.js("return window.notReloaded") is True  # updated in place, not reloaded
    assert browser.js("return document.querySelector('#vlan-guest .empty').textContent").startswith(
        "no services"
    )
    events = browser.wait_js(
        "return [...document.querySelectorAll('li[data-kind=\"goodbye\"]')]"
        ".map((e) => e.textContent).join('\\n')",
        what="the goodbye event",
    )
    assert SPEAKER in events, events
    assert browser.js(f"return !!document.querySelector('tr[data-instance=\"{PRINTER}\"]')")


def test_browse_and_explain_live_over_the_running_gateway(lab: Lab, world: dict[str, Any]) -> None:
    tf = str(world["token_file"])
    cfg = str(world["gw"].config_path)
    res = run_module("browse", "--config", cfg, "--resolve", ns=lab.gw)  # URL, token: config's
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    at = lines.index(next(ln for ln in lines if ln.split()[:3] == ["=", "iot", "_ipp._tcp"]))
    assert lines[at].endswith(PRINTER)
    assert lines[at + 1] == "   hostname = [labprinter.local.]"
    assert lines[at + 2].startswith("   address = [10.20.0.")
    assert lines[at + 3] == "   port = [631]"
    assert '"rp=ipp/print"' in lines[at + 4]
    # what guest may see: not iot's printer; trusted sees it (the policy) and its own NAS
    res = run_module("browse", "--url", URL, "--token-file", tf, "--view", "guest", ns=lab.gw)
    assert res.returncode == 0 and PRINTER not in res.stdout, res.stdout
    res = run_module("browse", "--url", URL, "--token-file", tf, "--view", "trusted", ns=lab.gw)
    got = {tuple(ln.split(maxsplit=3)[1:]) for ln in res.stdout.splitlines()}
    assert got == {("iot", "_ipp._tcp", PRINTER), ("trusted", "_smb._tcp", NAS)}, res.stdout
    # why does guest not see the printer?
    res = run_module(
        "explain", "--live", "--config", cfg, "--view", "guest", f"{PRINTER}._ipp._tcp", ns=lab.gw
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith(f"{PRINTER}._ipp._tcp: exists (view guest)"), out
    assert f"VLAN iot: holds {PRINTER} (last announced" in out
    assert "view guest sees it: no (decided by no allow policy (default))" in out
    assert "VLAN trusted: holds nothing" in out and "(the reflector is off)" in out
    res = run_module(
        "explain", "--live", "--url", URL, "--token-file", tf, "--view", "trusted",
        "--vlan", "iot", "_ipp._tcp", ns=lab.gw,
    )  # fmt: skip
    assert "view trusted sees it: yes (decided by printers-for-trusted)" in res.stdout
    # without the token: refused, and said so
    res = run_module("browse", "--url", URL, ns=lab.gw)
    assert res.returncode == 1 and "HTTP 401" in res.stderr, res.stderr
    res = run_module(
        "explain", "--live", "--url", URL, "--token-file", tf, "--view", "x", "_a._tcp", ns=lab.gw
    )
    assert res.returncode == 2 and "unknown view 'x'" in res.stderr, res.stderr


def _status(lab: Lab, raw: bytes, timeout: float = 10.0) -> int:
    sock = netns_socket(lab.gw, socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", 9353))
        sock.sendall(raw)
        head = sock.recv(64)
    return int(head.split()[1])


def test_http_limits_answer_clearly_and_leave_dns_and_probes_alone(
    lab: Lab, world: dict[str, Any]
) -> None:
    idle = []
    try:
        for _ in range(const.HTTP_MAX_CONNECTIONS + 10):
            sock = netns_socket(lab.gw, socket.AF_INET, socket.SOCK_STREAM)
            sock.connect(("127.0.0.1", 9353))
            idle.append(sock)
        # a flood of idle connections: the probes, the page's data and DNS are still served
        assert '"ok"' in http_get(lab.gw, "127.0.0.1", 9353, "/healthz")
        auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
        assert _status(lab, b"GET /api/vlans HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n") == 200
        answer = lab.query(lab.gw, "127.0.0.1", 5320, "labprinter.local.", "A")  # iot's view
        assert answer.answer, answer
        # missing and wrong tokens, oversized heads, non-GET: their own status codes
        assert _status(lab, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == 401
        bad = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\r\n"
        assert _status(lab, bad) == 401
        huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n"
        assert _status(lab, huge) == 431
        assert _status(lab, b"POST /healthz HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n") == 405
    finally:
        for sock in idle:
            sock.close()
    metrics = world_metrics(lab)
    assert 'mdns_gateway_http_connections_closed_total{reason="idle"}' in metrics
    assert 'mdns_gateway_http_requests_refused_total{status="401"}' in metrics
    assert 'mdns_gateway_http_requests_refused_total{status="431"}' in metrics


def world_metrics(lab: Lab) -> str:
    sock = netns_socket(lab.gw, socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(5.0)
        sock.connect(("127.0.0.1", 9353))
        auth = f"Authorization: Bearer {TOKEN}\r\n"
        sock.sendall(f"GET /metrics HTTP/1.0\r\nHost: x\r\n{auth}\r\n".encode())
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    text = b"".join(chunks).decode()
    assert text.split(maxsplit=2)[1] == "200", text[:200]
    return text
