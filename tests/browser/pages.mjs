// Load covkb's HTML pages in headless Chromium and measure what a reader meets:
// axe-core's violations (WCAG 2.1 A/AA and best practice), sideways scrolling, cells whose
// content overflows them, element counts, layout time, and a screenshot.
//
//   node pages.mjs CHROMIUM JOB.json
//   (JOB: {"profile": dir, "pages": [{"file", "width", "height"?, "shot"?, "at"?, "vision"?, "pdf"?}]})
// prints one JSON object per page, in order, as a JSON list.
import fs from "node:fs";
import { createRequire } from "node:module";
import puppeteer from "puppeteer-core";

const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const [chromium, jobFile] = process.argv.slice(2);
const job = JSON.parse(fs.readFileSync(jobFile, "utf8"));

const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--hide-scrollbars", `--user-data-dir=${job.profile}`],
});
const results = [];
try {
  for (const spec of job.pages) {
    const page = await browser.newPage();
    await page.setViewport({ width: spec.width, height: spec.height || 900, deviceScaleFactor: 1 });
    const session = await page.createCDPSession();
    await session.send("Performance.enable");
    if (spec.vision) {  // "achromatopsia" (greyscale), "deuteranopia", ...
      await session.send("Emulation.setEmulatedVisionDeficiency", { type: spec.vision });
    }
    await page.goto("file://" + spec.file, { waitUntil: "load" });
    const metrics = Object.fromEntries((await session.send("Performance.getMetrics")).metrics
      .map((m) => [m.name, m.value]));
    const measured = await page.evaluate(() => {
      const root = document.documentElement;
      const overflowing = [];
      for (const cell of document.querySelectorAll("td, th")) {
        if (cell.scrollWidth > cell.clientWidth + 1) {
          overflowing.push(`${cell.tagName.toLowerCase()}: ${cell.textContent.trim().slice(0, 60)}`);
        }
      }
      // a word split across lines: a text node whose range covers two lines inside one word
      const split = [];
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.parentElement.closest("svg, style, title, .path")) continue;  // a file path may wrap anywhere
        const text = node.textContent;
        for (const match of text.matchAll(/[\p{L}\p{N}]+/gu)) {
          if (match[0].length < 2) continue;
          const range = document.createRange();
          range.setStart(node, match.index);
          range.setEnd(node, match.index + match[0].length);
          const boxes = Array.from(range.getClientRects()).filter((r) => r.width > 0);
          if (boxes.length > 1 && new Set(boxes.map((r) => Math.round(r.top))).size > 1) {
            split.push(match[0]);
          }
        }
      }
      const headings = Array.from(document.querySelectorAll("h1, h2, h3, h4, h5, h6"))
        .map((h) => Number(h.tagName[1]));
      return {
        scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
        overflowing, split: split.slice(0, 40), splitCount: split.length, headings,
        elements: document.getElementsByTagName("*").length,
        bytes: document.documentElement.outerHTML.length,
      };
    });
    await page.evaluate(axeSource);
    const axe = await page.evaluate(async () => {
      const run = await window.axe.run(document, {
        runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
        resultTypes: ["violations"],
      });
      return run.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                                         nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
    });
    if (spec.shot) {
      // the whole page up to 12,000 px; from an element (spec.at) one window high
      const top = spec.at ? await page.$eval(spec.at, (e) => e.getBoundingClientRect().top + window.scrollY) : 0;
      const height = spec.at ? (spec.height || 900)
        : Math.min(12000, await page.evaluate(() => document.documentElement.scrollHeight));
      await page.screenshot({ path: spec.shot, captureBeyondViewport: true,
                              clip: { x: 0, y: top, width: spec.width, height } });
    }
    if (spec.pdf) {
      await page.pdf({ path: spec.pdf, format: "A4" });
    }
    results.push({ file: spec.file, width: spec.width, ...measured, violations: axe,
                   layoutSeconds: metrics.LayoutDuration, styleSeconds: metrics.RecalcStyleDuration });
    await page.close();
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(results));
