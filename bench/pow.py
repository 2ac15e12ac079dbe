"""How long the citizen page takes to solve the proof-of-work gate, per difficulty, in Debian's Chromium.

    .venv/bin/python bench/pow.py [--bits 8,12,14,16,18,20] [--samples 15] [--big-samples 7]

Run from the repository root.  It serves the bridge's real public app (the citizen page, its
static files, its CSP, ``GET /api/v1/site`` and ``GET /api/v1/challenge``; no homeserver is needed
for these) on a free loopback port with the gate on, starts Chromium (``tests/support/browser.py``)
and, in the page, calls the page's own ``js/pow.js`` the way the Start button does: fetch a
challenge, solve it in the Web Worker (SubtleCrypto SHA-256), hand back the answer.  Every answer
is checked by the server's own code.

Floors, measured in the same run:
  overhead   the same page call at 1 bit (challenge fetch + worker round trip, ~no hashing)
  native     Python's hashlib (one core, C) solving the very same challenges: the browser and it find
             the same answer after the same number of hashes, so the ratio is per unit of work.  A
             flood from native code pays the native time; a citizen pays the Chromium time.

The number of hashes to a solution is geometric (mean 2^bits, median ln2 * 2^bits, p90 ln10 * 2^bits),
so a handful of samples gives a noisy median; the rate (hashes/s) is stable, and the "expected" columns
give the p50 / p90 a citizen would see at that rate.  Nothing is asserted; the exit status is 0 unless
set-up fails.  Every process it starts (Chromium) is stopped by PID in a ``finally``.
"""
from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from aiohttp import web  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from bridge import config as cfg  # noqa: E402
from bridge.devtools.localhs import free_port  # noqa: E402
from bridge.web import pow  # noqa: E402
from bridge.web.server import public_app  # noqa: E402
from bridge.web.visitor_api import VisitorApi  # noqa: E402
from tests.support.browser import ChromiumProcess  # noqa: E402

SOLVE_IN_PAGE = """async () => {
  const m = await import("/static/js/pow.js");
  const t0 = performance.now();
  const s = await m.take();
  return {ms: performance.now() - t0, challenge: s.challenge, answer: s.answer, hashes: s.hashes,
          difficulty: s.difficulty};
}"""


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def bench_config(base: Path, port: int) -> cfg.Config:
    raw = yaml.safe_load((ROOT / "example-config.yaml").read_text())
    raw["appservice"].update(as_token="a" * 64, hs_token="b" * 64)
    raw["crypto"]["pickle_key"] = "c" * 64
    raw["web"].update(port=port, public_url=f"http://127.0.0.1:{port}")
    raw["proof_of_work"].update(enabled=True, base_bits=1, max_bits=32)
    raw["site"]["logo"] = ""
    return cfg.load(raw, base, {})


def set_bits(gate: pow.PowGate, bits: int) -> None:
    gate.pressure = pow.Pressure(pow.DifficultyRule(bits, bits, 1.0, 1.0))


def native_ms(challenge: str, bits: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    _, hashes = pow.solve(challenge, bits)
    return (time.perf_counter() - t0) * 1000, hashes


async def _nothing_stored() -> None:
    """No store behind this page: answers wait for nothing."""


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bits", default="8,12,14,16,18,20", help="difficulties to measure (comma-separated)")
    p.add_argument("--samples", type=int, default=15, help="solutions per difficulty up to 16 bits")
    p.add_argument("--big-samples", type=int, default=7, help="solutions per difficulty above 16 bits")
    args = p.parse_args()
    levels = [int(b) for b in args.bits.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="precinct-pow-bench-"))
    port = free_port()
    config = bench_config(tmp, port)
    gate = pow.PowGate.from_config(config)
    runner = web.AppRunner(public_app(VisitorApi(config, store=None, chats=None, pow_gate=gate),  # type: ignore[arg-type]
                                      durable=_nothing_stored))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    chromium = ChromiumProcess(tmp / "profile", tmp / "chromium.log")
    rows: list[dict[str, Any]] = []
    try:
        chromium.start()
        async with async_playwright() as playwright:
            browser = await playwright.chromium.connect_over_cdp(chromium.cdp_url)
            try:
                page = await (await browser.new_context()).new_page()
                set_bits(gate, 1)
                await page.goto(f"http://127.0.0.1:{port}/chat")
                await page.wait_for_selector("html[data-ready='1']")
                await page.evaluate(SOLVE_IN_PAGE)              # the one the page solved at load
                ua = await page.evaluate("() => navigator.userAgent")
                print(f"# {ua}")
                overhead = []
                for _ in range(args.samples):
                    overhead.append((await page.evaluate(SOLVE_IN_PAGE))["ms"])
                print(f"floor (overhead): the page's fetch + worker round trip at 1 bit, median "
                      f"{statistics.median(overhead):.1f} ms (p90 {pct(overhead, 90):.1f} ms, n={len(overhead)})")
                for bits in levels:
                    set_bits(gate, bits)
                    n = args.samples if bits <= 16 else args.big_samples
                    page_ms, native, hashes = [], [], []
                    for _ in range(n):
                        got = await page.evaluate(SOLVE_IN_PAGE)
                        assert got["difficulty"] == bits, got
                        assert pow.solves(got["challenge"], got["answer"], bits), "the page's answer is wrong"
                        nat_ms, nat_hashes = native_ms(got["challenge"], bits)
                        assert nat_hashes == got["hashes"], (nat_hashes, got["hashes"])
                        page_ms.append(got["ms"])
                        native.append(nat_ms)
                        hashes.append(got["hashes"])
                    rate = sum(hashes) / (sum(page_ms) / 1000)
                    native_rate = sum(hashes) / (sum(native) / 1000)
                    rows.append({"bits": bits, "n": n, "p50": statistics.median(page_ms), "p90": pct(page_ms, 90),
                                 "hashes": statistics.median(hashes), "rate": rate,
                                 "native": statistics.median(native), "native_rate": native_rate,
                                 "exp50": math.log(2) * 2 ** bits / rate * 1000,
                                 "exp90": math.log(10) * 2 ** bits / rate * 1000})
                    r = rows[-1]
                    print(f"  {bits} bits: n={n} median {r['p50']:.0f} ms, {r['rate'] / 1000:.0f} kH/s", flush=True)
            finally:
                await browser.close()
    finally:
        chromium.stop()
        await runner.cleanup()

    print()
    print("| bits | n | Chromium median (p90) | median hashes | Chromium kH/s | native median | native kH/s "
          "| Chromium ÷ native | expected p50 / p90 at the Chromium rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bits']} | {r['n']} | {r['p50']:.0f} ms ({r['p90']:.0f}) | {r['hashes']:.0f} | "
              f"{r['rate'] / 1000:.0f} | {r['native']:.1f} ms | {r['native_rate'] / 1000:.0f} | "
              f"{r['native_rate'] / r['rate']:.1f}× | {r['exp50'] / 1000:.2f} s / {r['exp90'] / 1000:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
