/* Ganglion's web dashboard: a small script with no dependencies and no build step.
 *
 * - The API token lives in sessionStorage (this tab only) and goes out as an Authorization header,
 *   never in a URL or a cookie: a page elsewhere cannot make the browser act with it (no CSRF).
 * - Everything the server sends is put on the page with textContent and DOM calls, never parsed
 *   as HTML; the Content-Security-Policy (server/http_ui.c) forbids inline script and style too.
 * - Views poll the REST API every few seconds with If-None-Match: an answer that did not change
 *   comes back as a 304 without a body and nothing is redrawn.
 * - Buttons are shown only for the scopes the token has (GET /v1/whoami); the server checks the
 *   scopes on every call anyway. */
'use strict';

(function () {
	const TOKEN_KEY = 'ganglion.token';
	const POLL_MS = 2000;
	const DEVICES_EVERY_MS = 30000; /* the whole device list, at most this often unless the status changed */
	const SVG_NS = 'http://www.w3.org/2000/svg';

	let who = null;     /* GET /v1/whoami */
	let view = null;    /* {refresh: async function, key} */
	let timer = null;
	let generation = 0; /* bumped on every navigation: a late answer for an old view is dropped */
	const etags = new Map(); /* url -> {etag, data} */

	/* --- DOM helpers: text only, never markup --------------------------------------------- */
	function el(tag, attrs, ...children) {
		const e = document.createElement(tag);
		for (const [k, v] of Object.entries(attrs || {})) {
			if (v === null || v === undefined || v === false)
				continue;
			if (k === 'class')
				e.className = v;
			else if (k === 'text')
				e.textContent = v;
			else if (k.startsWith('on'))
				e.addEventListener(k.slice(2), v);
			else
				e.setAttribute(k, v === true ? '' : String(v));
		}
		append(e, children);
		return e;
	}
	function append(parent, children) {
		for (const c of children.flat()) {
			if (c === null || c === undefined || c === false)
				continue;
			parent.append(c instanceof Node ? c : document.createTextNode(String(c)));
		}
		return parent;
	}
	/* Replaces target's children with children (nested arrays flattened, strings as text). */
	function fill(target, ...children) {
		target.replaceChildren();
		return append(target, children);
	}
	function svg(tag, attrs, ...children) {
		const e = document.createElementNS(SVG_NS, tag);
		for (const [k, v] of Object.entries(attrs || {})) {
			if (k === 'text')
				e.textContent = v;
			else
				e.setAttribute(k, String(v));
		}
		for (const c of children.flat())
			if (c)
				e.append(c);
		return e;
	}
	function badge(state, text) {
		return el('span', {class: 'badge ' + String(state).replace(/[^a-z_]/g, ''), text: text || state});
	}
	function link(href, text) {
		return el('a', {href, text});
	}
	function table(headers, rows, caption) {
		return el('div', {class: 'table-wrap'},
			  el('table', {},
			     caption ? el('caption', {class: 'muted', text: caption}) : null,
			     el('thead', {}, el('tr', {}, headers.map((h) => el('th', {scope: 'col', text: h})))),
			     el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c) => el('td', {}, c)))))));
	}
	function facts(obj) {
		if (!Object.keys(obj || {}).length)
			return el('p', {class: 'muted', text: 'none reported'});
		const dl = el('dl', {class: 'facts'});
		for (const [k, v] of Object.entries(obj || {}))
			dl.append(el('dt', {text: k}), el('dd', {text: typeof v === 'object' ? JSON.stringify(v) : String(v)}));
		return dl;
	}
	function labelList(labels) {
		const entries = Object.entries(labels || {});
		if (!entries.length)
			return el('span', {class: 'muted', text: 'none'});
		return el('ul', {class: 'labels'}, entries.map(([k, v]) => el('li', {text: k + '=' + v})));
	}
	function ago(t) {
		if (!t)
			return 'never';
		const s = Math.round((Date.now() - Date.parse(t)) / 1000);
		if (s < 90)
			return s + ' s ago';
		if (s < 5400)
			return Math.round(s / 60) + ' min ago';
		if (s < 172800)
			return Math.round(s / 3600) + ' h ago';
		return Math.round(s / 86400) + ' d ago';
	}
	function num(v, digits) {
		if (v === null || v === undefined)
			return '–';
		return typeof v === 'number' ? String(+v.toFixed(digits === undefined ? 3 : digits)) : String(v);
	}
	function bytes(n) {
		if (n === null || n === undefined)
			return '–';
		const u = ['B', 'KiB', 'MiB', 'GiB'];
		let i = 0;
		while (n >= 1024 && i < u.length - 1) {
			n /= 1024;
			i++;
		}
		return (i ? n.toFixed(1) : String(n)) + ' ' + u[i];
	}
	/* The refresh line is not announced (it changes every poll); what the user did and what went
	 * wrong is, through the live region. */
	function status(text) {
		document.getElementById('status-line').textContent = text;
	}
	function announce(text) {
		document.getElementById('announce').textContent = text;
	}

	/* --- the API ---------------------------------------------------------------------------- */
	class ApiError extends Error {
		constructor(st, detail) {
			super(detail);
			this.status = st;
		}
	}
	function token() {
		return sessionStorage.getItem(TOKEN_KEY);
	}
	async function api(method, path, body) {
		const headers = {'Authorization': 'Bearer ' + token(), 'Accept': 'application/json'};
		const init = {method, headers, cache: 'no-store', credentials: 'omit', redirect: 'error'};
		let cached = null;
		if (method === 'GET') {
			cached = etags.get(path);
			if (cached)
				headers['If-None-Match'] = cached.etag;
		}
		if (body !== undefined) {
			headers['Content-Type'] = 'application/json';
			init.body = JSON.stringify(body);
		}
		const r = await fetch(path, init);
		if (r.status === 304 && cached)
			return {data: cached.data, changed: false};
		if (r.status === 401 && method === 'GET') {
			signOut('The token is no longer valid (401): sign in again.');
			throw new ApiError(401, 'not signed in');
		}
		const text = await r.text();
		let data = null;
		try {
			data = text ? JSON.parse(text) : null;
		} catch (e) {
			data = null;
		}
		if (!r.ok)
			throw new ApiError(r.status, (data && data.detail) || r.statusText || String(r.status));
		const etag = r.headers.get('ETag');
		if (method === 'GET' && etag)
			etags.set(path, {etag, data});
		return {data, changed: true};
	}
	function q(path, params) {
		const u = new URLSearchParams();
		for (const [k, v] of Object.entries(params || {}))
			if (v !== undefined && v !== null && v !== '')
				u.set(k, v);
		const s = u.toString();
		return s ? path + '?' + s : path;
	}
	function seg(s) {
		return encodeURIComponent(s);
	}
	function can(...scopes) {
		return !!who && who.scopes.some((s) => s === 'admin' || scopes.includes(s));
	}

	/* --- sign-in ------------------------------------------------------------------------------- */
	async function signIn(t) {
		sessionStorage.setItem(TOKEN_KEY, t);
		etags.clear();
		try {
			who = (await api('GET', '/v1/whoami')).data;
		} catch (e) {
			sessionStorage.removeItem(TOKEN_KEY);
			who = null;
			throw e;
		}
		document.getElementById('who-name').textContent = 'Signed in as ' + who.name + ' (' + who.scopes.join(', ') + ')';
		document.getElementById('signin').hidden = true;
		document.getElementById('nav').hidden = false;
		document.getElementById('who').hidden = false;
		document.getElementById('view').hidden = false;
		route();
	}
	function signOut(why) {
		sessionStorage.removeItem(TOKEN_KEY);
		who = null;
		etags.clear();
		stopPolling();
		generation++;
		document.getElementById('nav').hidden = true;
		document.getElementById('who').hidden = true;
		const v = document.getElementById('view');
		v.hidden = true;
		fill(v);
		document.getElementById('signin').hidden = false;
		document.getElementById('signin-error').textContent = why || '';
		document.getElementById('token').value = '';
		document.getElementById('token').focus();
	}

	/* --- navigation and polling ------------------------------------------------------------ */
	function parseHash() {
		const h = location.hash.replace(/^#\/?/, '');
		const [path, query] = h.split('?');
		const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
		return {parts: parts.length ? parts : ['fleet'], params: new URLSearchParams(query || '')};
	}
	function stopPolling() {
		if (timer)
			clearTimeout(timer);
		timer = null;
	}
	async function tick(gen) {
		if (gen !== generation || !view)
			return;
		try {
			await view.refresh(gen);
			if (gen === generation)
				status('Updated ' + new Date().toLocaleTimeString() + '; refreshing every ' + POLL_MS / 1000 + ' s.');
		} catch (e) {
			if (gen === generation) {
				status('Could not refresh: ' + e.message);
				announce('Could not refresh: ' + e.message);
			}
		}
		if (gen === generation)
			timer = setTimeout(() => tick(gen), POLL_MS);
	}
	function route() {
		if (!who)
			return;
		stopPolling();
		announce('');
		const gen = ++generation;
		const {parts, params} = parseHash();
		const name = parts[0];
		const views = {fleet: fleetView, device: deviceView, rollouts: rolloutsView, rollout: rolloutView,
			       drift: driftView, models: modelsView, model: modelView};
		const make = views[name] || fleetView;
		const top = {device: 'fleet', rollout: 'rollouts', model: 'models'}[name] || name;
		for (const a of document.querySelectorAll('#nav a')) {
			if (a.dataset.view === top)
				a.setAttribute('aria-current', 'page');
			else
				a.removeAttribute('aria-current');
		}
		const root = document.getElementById('view');
		fill(root);
		view = make(root, parts.slice(1), params, gen);
		tick(gen);
		/* A new view: the keyboard and screen reader start at its content, not in the old one. */
		if (document.activeElement && document.activeElement.closest('#view, #nav'))
			document.getElementById('main').focus({preventScroll: true});
	}

	/* A region that is redrawn when its data change. */
	function region(root, label) {
		const r = el('section', {'aria-label': label});
		root.append(r);
		return r;
	}
	function showError(target, e) {
		fill(target, el('p', {class: 'error', role: 'alert', text: e.message}));
	}

	/* --- confirmation and actions ----------------------------------------------------------- */
	function confirmAction(text) {
		const d = document.getElementById('confirm');
		document.getElementById('confirm-text').textContent = text;
		return new Promise((resolve) => {
			d.addEventListener('close', () => resolve(d.returnValue === 'ok'), {once: true});
			d.returnValue = '';
			d.showModal();
			document.getElementById('confirm-cancel').focus();
		});
	}

	/* --- Fleet --------------------------------------------------------------------------- */
	function health(d, staleAfter) {
		const op = d.reported && d.reported.last_operation;
		if (op && op.state === 'failed')
			return {rank: 0, state: 'failing', text: 'failing: ' + (op.detail || op.version || '')};
		if (!d.last_seen_at || Date.now() - Date.parse(d.last_seen_at) > staleAfter * 1000)
			return {rank: 1, state: 'stale', text: 'stale'};
		const running = runningOf(d);
		for (const w of d.desired || [])
			if (running[w.model] !== w.version)
				return {rank: 2, state: 'updating', text: 'updating'};
		return {rank: 3, state: 'ok', text: 'ok'};
	}
	function runningOf(d) {
		const out = {};
		for (const m of (d.reported && d.reported.models) || [])
			if (m.state === 'active')
				out[m.name] = m.version;
		return out;
	}
	function runs(d) {
		const running = runningOf(d);
		const names = Object.keys(running).sort();
		if (!names.length)
			return el('span', {class: 'muted', text: 'nothing'});
		return el('ul', {class: 'labels'}, names.map((n) => el('li', {class: 'mono', text: n + ' ' + running[n]})));
	}
	async function allDevices(selector) {
		let items = [];
		let cursor = null;
		do {
			const r = await api('GET', q('/v1/devices', {selector, status: 'active', limit: 1000, cursor}));
			items = items.concat(r.data.items);
			cursor = r.data.next_cursor;
			if (!cursor)
				return {items, changed: r.changed || items.length > r.data.items.length};
		} while (items.length < 20000);
		return {items, changed: true};
	}
	function fleetView(root, _args, params) {
		const selector = params.get('selector') || '';
		const groupBy = params.get('group') || 'site';
		root.append(el('h1', {text: 'Fleet'}));
		const summary = region(root, 'Fleet summary');
		const form = el('form', {class: 'filter', role: 'search'},
				el('label', {for: 'selector', text: 'Selector'}),
				el('input', {id: 'selector', name: 'selector', value: selector, placeholder: 'site=north,tier!=lab', spellcheck: 'false'}),
				el('label', {for: 'group', text: 'Group by label'}),
				el('input', {id: 'group', name: 'group', value: groupBy, size: 10, spellcheck: 'false'}),
				el('button', {type: 'submit', text: 'Filter'}));
		form.addEventListener('submit', (ev) => {
			ev.preventDefault();
			const p = new URLSearchParams();
			const s = form.elements.selector.value.trim();
			const g = form.elements.group.value.trim();
			if (s)
				p.set('selector', s);
			if (g && g !== 'site')
				p.set('group', g);
			const qs = p.toString();
			location.hash = '#/fleet' + (qs ? '?' + qs : '');
		});
		root.append(form);
		const list = region(root, 'Devices');
		let st = null;
		const listed = {at: 0};
		return {
			async refresh() {
				/* /v1/status is one cheap statement; the device list costs the database about 0.1 ms of
				 * CPU a device (bench/ui_poll.py), so it is asked for again only when the status changed
				 * (a device updated, failed, went stale...) or every DEVICES_EVERY_MS for labels and
				 * check-in times. */
				const s = await api('GET', '/v1/status');
				let devices = {items: listed.items, changed: false};
				if (s.changed || !listed.items || Date.now() - listed.at > DEVICES_EVERY_MS) {
					try {
						devices = await allDevices(selector);
					} catch (e) {
						if (e.status === 400) {
							showError(list, e);
							return;
						}
						throw e;
					}
					listed.items = devices.items;
					listed.at = Date.now();
				}
				if (!s.changed && !devices.changed && st)
					return;
				st = s.data;
				const c = st.devices;
				fill(summary, el('ul', {class: 'summary'},
					el('li', {}, el('strong', {text: c.active}), 'active'),
					el('li', {}, el('strong', {text: c.failing}), 'failing'),
					el('li', {}, el('strong', {text: c.stale}), 'stale'),
					el('li', {}, el('strong', {text: st.rollouts.length}), 'rollouts in progress')));
				const groups = new Map();
				for (const d of devices.items) {
					const g = (d.labels || {})[groupBy];
					const key = g === undefined ? '(no ' + groupBy + ')' : g;
					if (!groups.has(key))
						groups.set(key, []);
					groups.get(key).push({d, h: health(d, st.stale_after)});
				}
				const out = [];
				if (!devices.items.length)
					out.push(el('p', {class: 'muted', text: selector ? 'No active device matches ' + selector + '.' : 'No active devices.'}));
				const worst = (rows) => Math.min(...rows.map((x) => x.h.rank));
				const keys = [...groups.keys()].sort((a, b) => worst(groups.get(a)) - worst(groups.get(b)) || a.localeCompare(b));
				for (const key of keys) {
					const rows = groups.get(key).sort((a, b) => a.h.rank - b.h.rank ||
									 (a.d.name || a.d.id).localeCompare(b.d.name || b.d.id));
					out.push(el('h2', {text: groupBy + ': ' + key + ' (' + rows.length + ')'}));
					out.push(table(['Device', 'Health', 'Runs', 'Labels', 'Last check-in'], rows.map(({d, h}) => [
						link('#/device/' + seg(d.id), d.name || d.id), badge(h.state, h.text), runs(d),
						labelList(d.labels), el('span', {title: d.last_seen_at || '', text: ago(d.last_seen_at)})])));
				}
				fill(list, ...out);
			},
		};
	}

	function deviceView(root, args) {
		const id = args[0] || '';
		const head = region(root, 'Device');
		const tele = region(root, 'Telemetry');
		const events = region(root, 'Update events');
		return {
			async refresh() {
				const d = await api('GET', '/v1/devices/' + seg(id));
				const ev = await api('GET', q('/v1/devices/' + seg(id) + '/events', {limit: 50}));
				const t = await api('GET', q('/v1/devices/' + seg(id) + '/telemetry', {limit: 20}));
				if (t.changed || !tele.firstChild)
					fill(tele, el('h2', {text: 'Telemetry (last windows)'}), t.data.windows.length ?
					     table(['Window start', 'Model', 'Requests', 'Error rate', 'p50 / p95 / p99 (µs)', 'Dropped', 'Largest drift (PSI)'],
						   t.data.windows.map((w) => {
							   const worst = (w.features || []).filter((f) => typeof f.psi === 'number').sort((a, b) => b.psi - a.psi)[0];
							   const l = w.latency_us || {};
							   return [String(w.start), w.model + ' ' + w.version,
								   num(w.requests, 0), num(w.error_rate, 4), num(l.p50, 0) + ' / ' + num(l.p95, 0) + ' / ' + num(l.p99, 0),
								   num(w.dropped || 0, 0), worst ? worst.feature + ' ' + num(worst.psi, 3) : '–'];
						   })) : el('p', {class: 'muted', text: 'No telemetry windows from this device in the last 7 days.'}));
				if (d.changed || ev.changed || !head.firstChild) {
					const dev = d.data;
					const reported = (dev.reported && dev.reported.models) || [];
					fill(head, 
						el('h1', {text: dev.name || dev.id}),
						el('dl', {class: 'facts'},
						   el('dt', {text: 'Id'}), el('dd', {class: 'mono', text: dev.id}),
						   el('dt', {text: 'Status'}), el('dd', {text: dev.status}),
						   el('dt', {text: 'Labels'}), el('dd', {}, labelList(dev.labels)),
						   el('dt', {text: 'Last check-in'}), el('dd', {text: ago(dev.last_seen_at) + (dev.last_seen_at ? ' (' + dev.last_seen_at + ')' : '')}),
						   el('dt', {text: 'Agent'}), el('dd', {text: (dev.reported && dev.reported.agent_version) || '–'}),
						   el('dt', {text: 'Enrolled'}), el('dd', {text: dev.created_at})),
						el('h2', {text: 'Models'}),
						table(['Model', 'Desired', 'From', 'Running', 'State', 'Requests', 'Errors'],
						      modelRows(dev.desired || [], reported)),
						(dev.conflicts || []).length ? el('h2', {text: 'Conflicts'}) : null,
						(dev.conflicts || []).length ? table(['Model', 'Deployment', 'Kept', 'Since'],
							dev.conflicts.map((c) => [c.model, c.deployment, c.kept, c.since])) : null,
						el('h2', {text: 'Facts'}), facts(dev.facts));
					fill(events, el('h2', {text: 'Update events'}),
						ev.data.items.length ? table(['When', 'State', 'Model', 'Version', 'Detail'], ev.data.items.map((e) => {
							const o = e.operation || {};
							return [el('span', {title: e.at, text: ago(e.at)}), badge(o.state === 'active' ? 'ok' : o.state === 'failed' ? 'failing' : 'updating', o.state),
								o.model || '', o.version || '', o.detail || ''];
						})) : el('p', {class: 'muted', text: 'No update events.'}));
				}
			},
		};
	}
	function modelRows(desired, reported) {
		const names = new Set([...desired.map((w) => w.model), ...reported.map((m) => m.name)]);
		return [...names].sort().map((n) => {
			const w = desired.find((x) => x.model === n) || {};
			const m = reported.find((x) => x.name === n) || {};
			return [link('#/model/' + seg(n), n), w.version || '–', w.override ? 'device override' : (w.deployment || '–'),
				m.version || '–', m.state ? badge(m.state === 'active' ? 'ok' : 'updating', m.state) : '–',
				num(m.requests, 0), num(m.errors, 0)];
		});
	}

	/* --- Rollouts -------------------------------------------------------------------------- */
	const ACTIONS = {
		pause: ['running'],
		resume: ['paused'],
		promote: ['running', 'paused'],
		abort: ['running', 'paused', 'waiting_approval'],
		approve: ['waiting_approval'],
	};
	function stagesOf(r) {
		const stages = (r.strategy && r.strategy.stages) || [{percent: 100}];
		const done = r.state === 'completed';
		const p = r.progress || {};
		return el('ol', {class: 'stages', 'aria-label': 'Stages'}, stages.map((s, i) => {
			let value = 0;
			let text = 'waiting';
			if (done || i < r.stage) {
				value = 100;
				text = 'passed';
			} else if (i === r.stage && ['running', 'paused', 'waiting_approval'].includes(r.state)) {
				const n = p.devices || 0;
				value = n ? Math.round(100 * (p.healthy || 0) / n) : 0;
				text = (p.healthy || 0) + ' of ' + n + ' healthy' + (p.failed ? ', ' + p.failed + ' failed' : '') +
					(p.held_back ? ', ' + p.held_back + ' held back as the control' : '');
			} else if (i === r.stage) {
				text = r.state.replace('_', ' ');
			}
			const id = 'stage-' + r.id + '-' + i;
			return el('li', {'data-stage': i, 'data-state': text},
				  el('span', {id, text: 'Stage ' + (i + 1) + ': ' + s.percent + ' %'}),
				  el('progress', {max: 100, value, 'aria-labelledby': id}),
				  el('span', {class: 'muted', text}));
		}));
	}
	function actionButtons(r, after) {
		if (!can('operator'))
			return null;
		const box = el('div', {class: 'actions', role: 'group', 'aria-label': 'Rollout actions'});
		for (const [action, states] of Object.entries(ACTIONS)) {
			if (!states.includes(r.state))
				continue;
			box.append(el('button', {type: 'button', class: action === 'abort' ? 'danger' : null, 'data-action': action,
						text: action[0].toUpperCase() + action.slice(1),
						onclick: async () => {
							const what = action + ' the rollout of ' + r.model + ' ' + r.from_version + ' → ' + r.to_version +
								' (deployment ' + r.deployment + ')?';
							if (!await confirmAction(what[0].toUpperCase() + what.slice(1)))
								return;
							try {
								await api('POST', '/v1/rollouts/' + seg(r.id) + '/' + action);
								announce('Rollout ' + action + ': done.');
							} catch (e) {
								announce(action + ' refused: ' + e.message);
							}
							after();
						}}));
		}
		return box.childNodes.length ? box : null;
	}
	function rolloutCard(r, after, detailed) {
		return el('article', {class: 'card', 'data-rollout': r.id, 'aria-labelledby': 'r-' + r.id},
			  el('h2', {id: 'r-' + r.id}, detailed ? r.model + ' ' + r.from_version + ' → ' + r.to_version
						     : link('#/rollout/' + seg(r.id), r.model + ' ' + r.from_version + ' → ' + r.to_version)),
			  el('p', {}, badge(r.state, r.state.replace('_', ' ')), ' deployment ', el('strong', {text: r.deployment}),
			     ', started by ', r.created_by, ' ', ago(r.created_at), r.reason ? el('span', {class: 'muted', text: ' — ' + r.reason}) : null),
			  stagesOf(r), actionButtons(r, after));
	}
	function rolloutsView(root) {
		root.append(el('h1', {text: 'Rollouts'}));
		const live = region(root, 'Rollouts in progress');
		const past = region(root, 'Finished rollouts');
		const v = {
			async refresh() {
				const r = await api('GET', q('/v1/rollouts', {limit: 100}));
				const items = r.data.items;
				const running = items.filter((x) => ['running', 'paused', 'waiting_approval'].includes(x.state));
				/* The list has no per-stage progress: each rollout in progress is fetched for it. */
				const full = [];
				let changed = r.changed || !live.firstChild;
				for (const x of running) {
					const one = await api('GET', '/v1/rollouts/' + seg(x.id));
					changed = changed || one.changed;
					full.push(one.data);
				}
				if (!changed)
					return;
				fill(live, el('h2', {text: 'In progress'}),
					full.length ? full.map((x) => rolloutCard(x, () => v.refresh(), false)) : el('p', {class: 'muted', text: 'No rollout in progress.'}));
				const done = items.filter((x) => !running.includes(x));
				fill(past, el('h2', {text: 'Finished'}), done.length ? table(['Rollout', 'Deployment', 'State', 'Started', 'Finished', 'Reason'],
					done.map((x) => [link('#/rollout/' + seg(x.id), x.model + ' ' + x.from_version + ' → ' + x.to_version), x.deployment,
						badge(x.state, x.state.replace('_', ' ')), ago(x.created_at), x.finished_at ? ago(x.finished_at) : '–', x.reason || ''])) : el('p', {class: 'muted', text: 'None yet.'}));
			},
		};
		return v;
	}
	/* A line chart: one line per series (points: [{value, title}], the same x positions for
	 * all), a dashed line at limit (when a number), a y axis from 0. Text for screen readers in
	 * aria-label, and a title on each point. */
	function niceCeil(v) {
		if (!(v > 0))
			return 1;
		const p = Math.pow(10, Math.floor(Math.log10(v)));
		for (const m of [1, 2, 2.5, 5, 10])
			if (m * p >= v)
				return m * p;
		return 10 * p;
	}
	function lineChart(name, series, limit, xlabels) {
		const W = 320, H = 120, L = 36, R = 8, T = 8, B = 20;
		const n = Math.max(0, ...series.map((x) => x.points.length));
		const vals = series.flatMap((x) => x.points.map((p) => p.value)).filter((v) => typeof v === 'number');
		const top = niceCeil(Math.max(typeof limit === 'number' ? limit : 0, ...vals) * 1.05);
		const x = (i) => L + (n > 1 ? i * (W - L - R) / (n - 1) : (W - L - R) / 2);
		const y = (v) => H - B - (Math.min(v, top) / top) * (H - B - T);
		const desc = series.map((x) => x.name + ': ' + x.points.map((p) => num(p.value)).join(', ')).join('; ') +
			(typeof limit === 'number' ? '; limit ' + num(limit) : '');
		const s = svg('svg', {class: 'hist', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': name + ' — ' + desc},
			      svg('line', {class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B}),
			      svg('line', {class: 'axis', x1: L, y1: T, x2: L, y2: H - B}),
			      svg('text', {x: 2, y: T + 8, 'font-size': 10, text: num(top, 3)}),
			      svg('text', {x: 2, y: H - B, 'font-size': 10, text: '0'}));
		if (xlabels && xlabels.length)
			for (const i of [0, xlabels.length - 1])
				s.append(svg('text', {x: i ? W - R - 40 : L, y: H - 5, 'font-size': 10, text: xlabels[i]}));
		if (typeof limit === 'number')
			s.append(svg('line', {class: 'limit', x1: L, y1: y(limit), x2: W - R, y2: y(limit)}));
		series.forEach((ser, k) => {
			const pts = ser.points.map((p, i) => (typeof p.value === 'number' ? [x(i), y(p.value), p] : null)).filter(Boolean);
			if (pts.length > 1)
				s.append(svg('polyline', {class: 'line s' + (k % 4), points: pts.map(([a, b]) => a + ',' + b).join(' ')}));
			for (const [cx, cy, p] of pts)
				s.append(svg('circle', {cx, cy, r: 3, class: 'dot s' + (k % 4)},
					     svg('title', {text: ser.name + ': ' + num(p.value) + (p.title ? ' (' + p.title + ')' : '')})));
		});
		const legend = series.length > 1 ? el('div', {class: 'legend'}, series.map((ser, k) =>
			el('span', {}, el('span', {class: 'swatch s' + (k % 4)}), ser.name))) : null;
		return el('figure', {'data-chart': name}, el('figcaption', {text: name}), s, legend);
	}
	function gateChart(name, points, limit) {
		return lineChart(name, [{name, points: points.map((p) => ({value: p.value, title: p.at}))}], limit);
	}
	/* A rollout event's detail, readable: its scalar fields, the stage's figures, and each gate. */
	function eventDetail(d) {
		const items = [];
		const scalars = Object.entries(d || {}).filter(([, v]) => v === null || typeof v !== 'object');
		if (scalars.length)
			items.push(scalars.map(([k, v]) => k + ' ' + (k === 'stage' && typeof v === 'number' ? v + 1 : num(v))).join(', '));
		if (d && d.stats)
			items.push(Object.entries(d.stats).filter(([, v]) => v !== null).map(([k, v]) => k.replace(/_/g, ' ') + ' ' + num(v)).join(', '));
		for (const g of (d && d.gates) || [])
			items.push(g.gate + ': ' + g.state + (g.detail ? ' (' + g.detail + ')' : ''));
		for (const [k, v] of Object.entries(d || {}))
			if (v && typeof v === 'object' && k !== 'stats' && k !== 'gates')
				items.push(k + ': ' + JSON.stringify(v));
		return el('ul', {class: 'event-detail'}, items.map((t) => el('li', {text: t})));
	}
	/* The canary judgement from telemetry windows (GET /v1/models/{name}/canary): the new version
	 * against the old over the last hour, metric by metric. */
	async function judgement(target, ro) {
		let c;
		try {
			c = await api('GET', q('/v1/models/' + seg(ro.model) + '/canary', {canary: ro.to_version, control: ro.from_version}));
		} catch (e) {
			if (e.status >= 400 && e.status < 500) {
				fill(target, el('h2', {text: 'Telemetry judgement'}), el('p', {class: 'muted', text: e.message}));
				return;
			}
			throw e;
		}
		if (!c.changed && target.firstChild)
			return;
		const d = c.data;
		fill(target, el('h2', {text: 'Telemetry judgement (last hour)'}),
		     el('p', {}, badge({pass: 'pass', fail: 'fail', marginal: 'unjudged', inconclusive: 'unjudged'}[d.verdict] || 'unjudged', d.verdict),
			' score ' + num(d.score, 2) + ', confidence ' + num(d.confidence, 2)),
		     d.metrics.length ? table(['Metric', 'Verdict', 'Canary n', 'Control n', 'Canary median', 'Control median', 'Effect', 'Tolerance', 'p'],
					      d.metrics.map((m) => [m.name, m.verdict, num(m.n_canary, 0), num(m.n_control, 0), num(m.median_canary),
								    num(m.median_control), num(m.effect), num(m.tolerance), num(m.p, 4)])) : null);
	}
	function rolloutView(root, args) {
		const id = args[0] || '';
		const head = region(root, 'Rollout');
		const gates = region(root, 'Gates');
		const judged = region(root, 'Telemetry judgement');
		const refreshJudgement = (ro) => judgement(judged, ro);
		const evs = region(root, 'Events');
		const v = {
			async refresh() {
				const r = await api('GET', '/v1/rollouts/' + seg(id));
				const e = await api('GET', q('/v1/rollouts/' + seg(id) + '/events', {limit: 1000}));
				await refreshJudgement(r.data);
				if (!r.changed && !e.changed && head.firstChild)
					return;
				const ro = r.data;
				const p = ro.progress || {};
				fill(head, el('h1', {text: 'Rollout'}), rolloutCard(ro, () => v.refresh(), true),
					el('h2', {text: 'Canary and control'}),
					table(['Cohort', 'Devices', 'Requests', 'Errors', 'Error rate', 'Latency samples', 'p95 latency (ms)'], [
						['canary (' + ro.to_version + ')', num(p.devices, 0), num(p.canary_requests, 0), num(p.canary_errors, 0),
						 p.canary_requests ? num(p.canary_errors / p.canary_requests, 4) : '–', num(p.canary_latency_samples, 0), num(p.canary_p95_latency_ms)],
						['control (' + ro.from_version + ')', num(p.control_devices, 0), num(p.control_requests, 0), num(p.control_errors, 0),
						 p.control_requests ? num(p.control_errors / p.control_requests, 4) : '–', num(p.control_latency_samples, 0), num(p.control_p95_latency_ms)]]));
				const series = new Map();
				for (const ev of e.data.items)
					for (const g of (ev.detail && ev.detail.gates) || []) {
						if (!series.has(g.gate))
							series.set(g.gate, {limit: g.limit, points: []});
						series.get(g.gate).points.push({value: g.value, at: ev.at});
					}
				for (const g of p.gates || []) {
					if (!series.has(g.gate))
						series.set(g.gate, {limit: g.limit, points: []});
					series.get(g.gate).points.push({value: g.value, at: 'now'});
				}
				fill(gates, el('h2', {text: 'Gates'}),
					(p.gates || []).length ? table(['Gate', 'State', 'Value', 'Limit', 'Detail'],
						p.gates.map((g) => [g.gate, badge(g.state), num(g.value, 4), num(g.limit, 4), g.detail || ''])) : el('p', {class: 'muted', text: 'No gates judged now.'}),
					series.size ? el('div', {class: 'charts'}, [...series].map(([n, s]) => gateChart(n, s.points, s.limit))) : null);
				fill(evs, el('h2', {text: 'Events'}), table(['When', 'Event', 'Detail'],
					e.data.items.slice().reverse().map((x) => [el('span', {title: x.at, text: ago(x.at)}), x.kind, eventDetail(x.detail)])));
			},
		};
		return v;
	}

	/* --- Drift ---------------------------------------------------------------------------- */
	/* Reference proportions vs observed shares of one feature, bar pairs per bin. */
	function histogram(f) {
		const ref = f.reference || [];
		const counts = (f.counts || []).slice();
		let total = counts.reduce((a, b) => a + b, 0);
		const bins = ref.length;
		/* Numeric features: bins are the profile's; underflow/overflow shown as the outer bins of
		 * the observation when there are any. Categorical: the vocabulary plus "other". */
		const obs = counts.map((c) => (total ? c / total : 0));
		const labels = f.vocabulary ? [...f.vocabulary, 'other'] : (f.edges || []).slice(0, -1).map((e) => num(e, 2));
		const W = 360, H = 150, P = 24;
		const bw = (W - 2 * P) / Math.max(bins, 1);
		const top = Math.max(...ref, ...obs, 1e-9);
		const s = svg('svg', {class: 'hist', viewBox: `0 0 ${W} ${H}`, role: 'img',
				      'aria-label': f.feature + ': reference ' + ref.map((v) => num(v, 2)).join(' ') + '; observed ' + obs.map((v) => num(v, 2)).join(' ')},
			      svg('line', {class: 'axis', x1: P, y1: H - P, x2: W - P, y2: H - P}));
		for (let i = 0; i < bins; i++) {
			const hr = (ref[i] / top) * (H - 2 * P);
			const ho = ((obs[i] || 0) / top) * (H - 2 * P);
			const x = P + i * bw;
			s.append(svg('rect', {class: 'ref', x: x + bw * 0.1, y: H - P - hr, width: bw * 0.4, height: hr},
				     svg('title', {text: 'bin ' + (labels[i] || i) + ' reference ' + num(ref[i], 3)})));
			s.append(svg('rect', {class: 'obs', x: x + bw * 0.5, y: H - P - ho, width: bw * 0.4, height: ho},
				     svg('title', {text: 'bin ' + (labels[i] || i) + ' observed ' + num(obs[i] || 0, 3)})));
		}
		if (labels.length)
			for (const i of [0, Math.floor((bins - 1) / 2), bins - 1])
				if (labels[i] !== undefined)
					s.append(svg('text', {x: P + i * bw, y: H - 6, 'font-size': 10, text: labels[i]}));
		return s;
	}
	function driftView(root, _args, params) {
		const model = params.get('model') || '';
		const version = params.get('version') || '';
		const by = params.get('by') || '';
		const since = params.get('since') || '1h';
		root.append(el('h1', {text: 'Drift'}));
		const alerts = region(root, 'Open alerts');
		const form = el('form', {class: 'filter'});
		const body = region(root, 'Feature drift');
		root.insertBefore(form, body);
		let modelsLoaded = false;
		async function fillForm() {
			const ms = (await api('GET', q('/v1/models', {limit: 1000}))).data.items;
			const mSel = el('select', {id: 'drift-model', name: 'model'}, ms.map((m) => el('option', {value: m.name, selected: m.name === model, text: m.name})));
			const cur = model || (ms[0] && ms[0].name) || '';
			let versions = [];
			if (cur)
				versions = (await api('GET', '/v1/models/' + seg(cur))).data.versions.map((x) => x.version);
			const vSel = el('select', {id: 'drift-version', name: 'version'}, versions.map((x) => el('option', {value: x, selected: x === version, text: x})));
			mSel.addEventListener('change', () => {
				location.hash = '#/drift?' + new URLSearchParams({model: mSel.value, since: form.elements.since.value}).toString();
			});
			fill(form, el('label', {for: 'drift-model', text: 'Model'}), mSel,
					     el('label', {for: 'drift-version', text: 'Version'}), vSel,
					     el('label', {for: 'drift-since', text: 'Since'}), el('input', {id: 'drift-since', name: 'since', value: since, size: 6}),
					     el('label', {for: 'drift-by', text: 'Group by label'}), el('input', {id: 'drift-by', name: 'by', value: by, size: 8}),
					     el('button', {type: 'submit', text: 'Show'}));
			modelsLoaded = true;
			return {model: cur, version: version || versions[0] || ''};
		}
		form.addEventListener('submit', (ev) => {
			ev.preventDefault();
			const p = {model: form.elements.model.value, version: form.elements.version.value, since: form.elements.since.value.trim()};
			if (form.elements.by.value.trim())
				p.by = form.elements.by.value.trim();
			location.hash = '#/drift?' + new URLSearchParams(p).toString();
		});
		let chosen = null;
		const history = region(root, 'Drift over time');
		let historyAt = 0;
		/* PSI and JS over time: the period cut in six slices, each asked for on its own, on
		 * boundaries that stay put between polls (so each slice's ETag holds), every 15 s. */
		async function refreshHistory() {
			const m = /^(\d+)([mhd])$/.exec(since);
			if (!m) {
				fill(history, el('p', {class: 'muted', text: 'Drift over time needs a period given as a duration (90m, 6h, 7d).'}));
				return;
			}
			const total = Number(m[1]) * {m: 60, h: 3600, d: 86400}[m[2]];
			const n = 6;
			const slice = Math.max(60, Math.ceil(total / n / 60) * 60);
			const end = Math.ceil(Date.now() / 1000 / slice) * slice;
			const iso = (t) => new Date(t * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
			const slices = [];
			let changed = !history.firstChild;
			for (let i = n; i > 0; i--) {
				const from = end - i * slice;
				const r = await api('GET', q('/v1/models/' + seg(chosen.model) + '/versions/' + seg(chosen.version) + '/drift',
							     {since: iso(from), until: iso(from + slice), by}));
				changed = changed || r.changed;
				slices.push({from, data: r.data});
			}
			if (!changed)
				return;
			const features = new Map(); /* feature -> group -> [{psi, js}] per slice */
			const groups = new Set();
			slices.forEach((sl, i) => {
				for (const g of sl.data.groups) {
					const gname = by ? (g.group === null ? '(none)' : g.group) : 'all devices';
					groups.add(gname);
					for (const f of g.features) {
						if (!features.has(f.feature))
							features.set(f.feature, new Map());
						const per = features.get(f.feature);
						if (!per.has(gname))
							per.set(gname, Array.from({length: n}, () => ({value: null})));
						per.get(gname)[i] = {value: f.psi, title: 'JS ' + num(f.js) + ', n ' + f.n + ', from ' + iso(sl.from)};
					}
				}
			});
			const xl = [iso(end - n * slice).slice(11, 16), iso(end).slice(11, 16)];
			fill(history, el('h2', {text: 'PSI over time (' + n + ' slices of ' + slice / 60 + ' min)'}),
			     features.size ? el('div', {class: 'charts'}, [...features].map(([fname, per]) =>
				     lineChart('PSI of ' + fname, [...per].map(([gname, points]) => ({name: gname, points})), 0.25, xl))) :
				     el('p', {class: 'muted', text: 'No telemetry in this period.'}),
			     el('p', {class: 'muted', text: 'Dashed: PSI 0.25, the usual threshold of a significant shift (the default of an alert rule). Each point\'s title gives its JS divergence.'}));
		}
		return {
			async refresh() {
				const a = await api('GET', q('/v1/alerts', {state: 'open', limit: 200}));
				if (a.changed || !alerts.firstChild)
					fill(alerts, el('h2', {text: 'Open alerts'}), a.data.items.length ?
						table(['Rule', 'Model', 'Version', 'Feature', 'Group', 'Metric', 'Value', 'Threshold', 'Opened'],
						      a.data.items.map((x) => [x.rule, x.model, x.version, x.feature, x.group === null ? 'all' : x.group,
									       x.metric, num(x.value, 4), num(x.threshold, 4), ago(x.opened_at)])) :
						el('p', {class: 'muted', text: 'No open alerts.'}));
				if (!modelsLoaded)
					chosen = await fillForm();
				if (!chosen.model || !chosen.version) {
					fill(body, el('p', {class: 'muted', text: 'No model version to show.'}));
					return;
				}
				let d;
				try {
					d = await api('GET', q('/v1/models/' + seg(chosen.model) + '/versions/' + seg(chosen.version) + '/drift', {since, by}));
				} catch (e) {
					if (e.status === 409 || e.status === 400 || e.status === 404) {
						showError(body, e);
						return;
					}
					throw e;
				}
				if (Date.now() - historyAt > 15000) {
					historyAt = Date.now();
					await refreshHistory();
				}
				if (!d.changed && body.firstChild)
					return;
				const out = [el('h2', {text: chosen.model + ' ' + chosen.version + ' since ' + d.data.since})];
				if (!d.data.groups.length)
					out.push(el('p', {class: 'muted', text: 'No telemetry in this period.'}));
				for (const g of d.data.groups) {
					out.push(el('h3', {text: (by ? by + ': ' + (g.group === null ? '(none)' : g.group) : 'All devices') +
							      ' — ' + g.devices + ' devices, ' + g.windows + ' windows, ' + g.requests + ' requests'}));
					out.push(el('div', {class: 'legend'}, el('span', {}, el('span', {class: 'swatch ref'}), 'reference'),
						    el('span', {}, el('span', {class: 'swatch obs'}), 'observed')));
					out.push(el('div', {class: 'charts'}, g.features.map((f) => el('figure', {'data-feature': f.feature},
						el('figcaption', {text: f.feature + ' — PSI ' + num(f.psi, 3) + ', JS ' + num(f.js, 3) + ', n ' + f.n}), histogram(f)))));
				}
				fill(body, ...out);
			},
		};
	}

	/* --- Models ---------------------------------------------------------------------------- */
	function modelsView(root) {
		root.append(el('h1', {text: 'Models'}));
		const body = region(root, 'Models');
		return {
			async refresh() {
				const m = await api('GET', q('/v1/models', {limit: 1000}));
				const s = await api('GET', '/v1/status');
				if (!m.changed && !s.changed && body.firstChild)
					return;
				const byModel = new Map(s.data.models.map((x) => [x.model, x]));
				fill(body, m.data.items.length ? table(['Model', 'Latest', 'Versions', 'Aliases', 'Devices', 'Updating', 'Failing'],
					m.data.items.map((x) => {
						const st = byModel.get(x.name) || {};
						return [link('#/model/' + seg(x.name), x.name), x.latest_version || '–', num(x.versions, 0),
							labelList(x.aliases), num(st.devices || 0, 0), num(st.updating || 0, 0), num(st.failing || 0, 0)];
					})) : el('p', {class: 'muted', text: 'No models published.'}));
			},
		};
	}
	function modelView(root, args) {
		const name = args[0] || '';
		const body = region(root, 'Model');
		const listed = {at: 0};
		return {
			async refresh() {
				const m = await api('GET', '/v1/models/' + seg(name));
				const s = await api('GET', '/v1/status');
				let devs = {items: listed.items, changed: false};
				if (s.changed || !listed.items || Date.now() - listed.at > DEVICES_EVERY_MS) {
					devs = await allDevices('');
					listed.items = devs.items;
					listed.at = Date.now();
				}
				if (!m.changed && !s.changed && !devs.changed && body.firstChild)
					return;
				const st = s.data.models.find((x) => x.model === name) || {versions: [], failures: []};
				const runningBy = new Map(); /* version -> devices that run it */
				for (const d of devs.items) {
					const v = runningOf(d)[name];
					if (v !== undefined) {
						if (!runningBy.has(v))
							runningBy.set(v, []);
						runningBy.get(v).push(d);
					}
				}
				const SHOW = 50;
				const counts = new Map(st.versions.map((v) => [v.version, v]));
				const aliasesOf = (v) => Object.entries(m.data.aliases || {}).filter(([, x]) => x === v).map(([a]) => a);
				fill(body, el('h1', {text: 'Model ' + name}),
					el('p', {}, 'Aliases: ', labelList(m.data.aliases)),
					table(['Version', 'Aliases', 'Format', 'Digest (SHA-256)', 'Size', 'Running', 'Desired', 'Published', 'Self-test', 'Yanked'],
					      m.data.versions.map((v) => {
						      const c = counts.get(v.version) || {};
						      return [v.version, aliasesOf(v.version).join(', '), v.format, el('code', {text: v.sha256}), bytes(v.length),
							      num(c.running || 0, 0), num(c.desired || 0, 0), ago(v.published_at) + ' by ' + v.published_by,
							      v.self_test ? 'yes' : 'no', v.yanked ? 'yes: ' + (v.yanked.reason || '') : 'no'];
					      })),
					el('h2', {text: 'Devices running it'}),
					runningBy.size ? table(['Version', 'Devices'], [...runningBy].sort((a, b) => b[1].length - a[1].length).map(([v, ds]) => [
						v, el('ul', {class: 'labels'}, ds.sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id)).slice(0, SHOW).map((d) => el('li', {}, link('#/device/' + seg(d.id), d.name || d.id))),
						      ds.length > SHOW ? el('li', {text: 'and ' + (ds.length - SHOW) + ' more'}) : null)])) :
						el('p', {class: 'muted', text: 'No device reports running it.'}),
					(st.failures || []).length ? el('h2', {text: 'Failures'}) : null,
					(st.failures || []).length ? table(['Version', 'Reason', 'Devices'], st.failures.map((f) => [f.version, f.reason, num(f.devices, 0)])) : null,
					el('p', {}, link('#/drift?model=' + seg(name), 'Drift of ' + name)));
			},
		};
	}

	/* --- start --------------------------------------------------------------------------- */
	document.addEventListener('DOMContentLoaded', () => {
		document.getElementById('signin-form').addEventListener('submit', async (ev) => {
			ev.preventDefault();
			const t = document.getElementById('token').value.trim();
			document.getElementById('signin-error').textContent = '';
			try {
				await signIn(t);
			} catch (e) {
				document.getElementById('signin-error').textContent =
					e.status === 401 ? 'That token is not valid (unknown, expired or revoked).' :
					e.status === 403 ? 'That is not an API token.' : 'Sign-in failed: ' + e.message;
			}
		});
		document.getElementById('sign-out').addEventListener('click', () => signOut(''));
		window.addEventListener('hashchange', route);
		if (token()) {
			signIn(token()).catch(() => signOut('Sign in again.'));
		} else {
			signOut('');
		}
	});
})();
