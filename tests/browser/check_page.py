"""Load HTML pages in headless Chromium (Selenium) and report what a reader's browser saw.

Usage: check_page.py URL [URL ...] [--screenshot DIR]

Prints one JSON document: per page, the browser console's entries (SEVERE ones are errors),
the plots in the DOM (`svg.distribution` with their kernels, `svg.roofline`, `svg.history`,
`svg.sweep`), the resources the page loaded (`performance.getEntriesByType('resource')`,
empty for a page that makes no network request), and SVG shapes that hold elements other than
a `<title>` (a sign of an unclosed shape that swallowed its siblings). The Rust test
(tests/it/html.rs) asserts on it. Needs Chromium and chromedriver (Debian's) and selenium in
.tools/venv: scripts/ensure-test-tools installs them.
"""

import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

PROBE = """
const q = (s) => Array.from(document.querySelectorAll(s));
const shapes = q('svg circle, svg rect, svg line, svg polyline, svg path');
return {
  title: document.title,
  distribution: q('svg.distribution').length,
  distribution_kernels: q('svg.distribution').map((e) => e.getAttribute('data-kernel')),
  roofline: q('svg.roofline').length,
  history: q('svg.history').length,
  sweep: q('svg.sweep').length,
  points_with_tooltips: q('svg circle').filter((c) => c.querySelector('title')).length,
  misnested: shapes.filter((e) => Array.from(e.children).some((c) => c.tagName !== 'title')).length,
  svg_sizes: q('svg').map((e) => { const r = e.getBoundingClientRect(); return [r.width, r.height]; }),
  resources: performance.getEntriesByType('resource').map((e) => e.name),
  text: document.body.innerText.slice(0, 4000),
};
"""


def main():
    args = sys.argv[1:]
    shots = None
    if "--screenshot" in args:
        i = args.index("--screenshot")
        shots = args[i + 1]
        args = args[:i] + args[i + 2:]
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,3000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(60)
    pages = []
    try:
        for n, url in enumerate(args):
            driver.get(url)
            seen = driver.execute_script(PROBE)
            seen["url"] = url
            seen["console"] = [
                {"level": e["level"], "message": e["message"]} for e in driver.get_log("browser")
            ]
            seen["severe"] = [e for e in seen["console"] if e["level"] == "SEVERE"]
            if shots:
                driver.save_screenshot(os.path.join(shots, f"page-{n}.png"))
            pages.append(seen)
    finally:
        driver.quit()
    json.dump({"pages": pages}, sys.stdout)


if __name__ == "__main__":
    main()
