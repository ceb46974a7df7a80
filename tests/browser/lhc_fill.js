// Fill covkb's Questionnaire in LHC-Forms, in headless Chromium, as a clinician would.
//
//   node lhc_fill.js PAGE_URL JOB.json OUT.json
//
// JOB.json: {"chromium": path, "profile": dir, "questionnaire": {...}, "record": [resources],
//            "patient": {...}, "steps": [...]}. The page (served by the test) loads LHC-Forms.
// The form is given a FHIR context whose patient is JOB.patient and whose server answers
// the form's x-fhir-query searches from JOB.record, so LHC-Forms prepopulates it itself.
// Steps: {"click": "<element id>"}, {"type": ["<element id>", "text"]},
// {"date": ["<element id>", "MM/DD/YYYY"]}, {"button": "<text the button shows>"}.
// OUT.json: {"prepopulated": the QuestionnaireResponse before any step, "response": the one
// after every step, both exported with LHC-Forms' own API (LForms.Util.getFormFHIRData),
// "errors": errors the page raised}.
'use strict';
const fs = require('fs');
const puppeteer = require('puppeteer-core');

async function main() {
  const [url, jobPath, outPath] = process.argv.slice(2);
  const job = JSON.parse(fs.readFileSync(jobPath, 'utf8'));
  const browser = await puppeteer.launch({
    executablePath: job.chromium, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
           '--disable-sync', '--no-first-run', `--user-data-dir=${job.profile}`]});
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(url);
    await page.waitForFunction(() => window.LForms && LForms.Util && LForms.FHIR, {timeout: 60000});
    const added = await page.evaluate(async (job) => {
      const wanted = (query) => {
        const [kind, search] = query.split('?');
        const params = new URLSearchParams(search);
        const codes = (params.get('code') || '').split(',').filter(Boolean);
        return job.record.filter((r) => r.resourceType === kind && (!codes.length || (r.code?.coding || []).some(
          (c) => codes.includes(`${c.system}|${c.code}`))));
      };
      const server = {
        getFhirVersion: async () => '4.0.1',
        request: async (request) => {
          const query = typeof request === 'string' ? request : request.url;
          return {resourceType: 'Bundle', type: 'searchset',
                  entry: wanted(query).map((resource) => ({resource}))};
        },
      };
      LForms.Util.setFHIRContext(server, {patient: job.patient});
      try {
        await LForms.Util.addFormToPage(job.questionnaire, 'form', {prepopulate: true});
        return null;
      } catch (error) {
        return (Array.isArray(error) ? error : [error]).map((e) => String(e && e.message || e));
      }
    }, job);
    if (added) throw new Error(`LHC-Forms could not add the form: ${added.join('; ')}`);
    await new Promise((resolve) => setTimeout(resolve, 1500));  // the prepopulating searches
    const exported = () => page.evaluate(() => LForms.Util.getFormFHIRData('QuestionnaireResponse', 'R4'));
    const prepopulated = await exported();
    for (const step of job.steps) {
      if (step.click) {
        await page.click(`[id="${step.click}"]`);
      } else if (step.type) {
        const [id, text] = step.type;
        await page.click(`[id="${id}"]`, {count: 3});
        await page.keyboard.type(text);
        await page.keyboard.press('Tab');
      } else if (step.date) {
        const [id, text] = step.date;
        await page.click(`[id="${id}"] input`);
        await page.keyboard.type(text);
        await page.keyboard.press('Enter');
      } else if (step.button) {
        const buttons = await page.$$('button');
        const texts = [];
        let pressed = false;
        for (const button of buttons) {
          const text = await button.evaluate((b) => b.textContent.trim().replace(/\s+/g, ' '));
          texts.push(text);
          if (text === step.button && !pressed) {
            await button.click();
            pressed = true;
          }
        }
        if (!pressed) throw new Error(`no button shows ${step.button}; the page shows ${JSON.stringify(texts)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const response = await exported();
    fs.writeFileSync(outPath, JSON.stringify({prepopulated, response, errors}));
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
