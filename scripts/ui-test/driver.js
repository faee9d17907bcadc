// Drives Debian's chromium with playwright-core for tests/integration/test_ui.py: one browser page,
// commands as JSON lines on stdin ({"id", "op", ...}), one JSON line answer each on stdout
// ({"id", "ok": true, "value"} or {"id", "ok": false, "error"}). The test holds the logic; this
// only runs the page. Everything the page does that a test must see is recorded and returned by
// "events": console errors, uncaught exceptions, JavaScript dialogs (alert() from injected markup
// would show up there), Content-Security-Policy violations, and requests to other origins.
'use strict';

const readline = require('readline');
const path = require('path');
const {chromium} = require('playwright-core');

const executablePath = process.env.GANGLION_CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 15000;

let browser, page;
const events = [];

async function launch(a) {
	browser = await chromium.launch({
		executablePath,
		headless: true,
		// Sandbox off: CI runs as root, where chromium refuses its sandbox.
		args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
	});
	const context = await browser.newContext({viewport: {width: a.width || 1280, height: a.height || 900}});
	page = await context.newPage();
	page.setDefaultTimeout(TIMEOUT);
	page.on('console', (m) => {
		if (m.type() === 'error')
			events.push({kind: 'console', text: m.text()});
	});
	page.on('pageerror', (e) => events.push({kind: 'pageerror', text: String(e)}));
	page.on('dialog', async (d) => {
		events.push({kind: 'dialog', text: d.message()});
		await d.dismiss();
	});
	page.on('request', (r) => {
		const u = new URL(r.url());
		if (a.origin && u.origin !== a.origin && u.protocol !== 'data:')
			events.push({kind: 'foreign-request', text: r.url()});
	});
	return browser.version();
}

const ops = {
	launch,
	async goto(a) {
		await page.goto(a.url, {waitUntil: 'domcontentloaded'});
		return page.url();
	},
	async fill(a) {
		await page.locator(a.selector).first().fill(a.value);
	},
	async click(a) {
		await locate(a).click();
	},
	async press(a) {
		await page.keyboard.press(a.key);
	},
	// Waits until an element matching selector (and holding text, when given) is visible.
	async wait(a) {
		await locate(a).waitFor({state: 'visible', timeout: a.timeout || TIMEOUT});
	},
	async waitGone(a) {
		await locate(a).waitFor({state: 'detached', timeout: a.timeout || TIMEOUT});
	},
	async text(a) {
		return await page.locator(a.selector).first().textContent();
	},
	async texts(a) {
		return await page.locator(a.selector).allTextContents();
	},
	async count(a) {
		return await page.locator(a.selector).count();
	},
	async evaluate(a) {
		return await page.evaluate(a.expression);
	},
	async screenshot(a) {
		const file = path.join(a.dir, a.name + '.png');
		await page.screenshot({path: file, fullPage: true});
		return file;
	},
	async zoom(a) {
		// 200 % zoom: the same page in half the CSS pixels, as a browser zoom does.
		await page.setViewportSize({width: a.width, height: a.height});
	},
	async events() {
		return events.splice(0);
	},
	async close() {
		if (browser)
			await browser.close();
		browser = null;
	},
};

function locate(a) {
	let l = page.locator(a.selector);
	if (a.hasText !== undefined)
		l = l.filter({hasText: a.hasText});
	return l.first();
}

const rl = readline.createInterface({input: process.stdin});
let chain = Promise.resolve();
rl.on('line', (line) => {
	chain = chain.then(async () => {
		let msg;
		try {
			msg = JSON.parse(line);
			const fn = ops[msg.op];
			if (!fn)
				throw new Error('unknown op ' + msg.op);
			const value = await fn(msg);
			process.stdout.write(JSON.stringify({id: msg.id, ok: true, value: value === undefined ? null : value}) + '\n');
		} catch (e) {
			process.stdout.write(JSON.stringify({id: msg && msg.id, ok: false, error: String(e && e.stack || e)}) + '\n');
		}
	});
});
rl.on('close', () => {
	chain.then(() => ops.close()).then(() => process.exit(0), () => process.exit(1));
});
