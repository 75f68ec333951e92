/* Shopkeeper web snippet: page views, clicks, custom events, identify, personalised placements.
 *
 *   <script>window.sk=window.sk||function(){(sk.q=sk.q||[]).push(arguments)};</script>
 *   <script async src="https://collect.example.com/sk.js" data-site="shop"></script>
 *
 *   sk('track', 'custom', {name: 'newsletter_signup'});
 *   sk('identify', {email: 'ann@example.com'}, {traits: {first_name: 'Ann'}, signature: '…'});
 *   <div data-sk-placement="home_hero"></div>   <!-- filled with the hub's decision -->
 *
 * Delivery: events wait in localStorage until the collector acknowledges them (it answers only
 * after the hub committed them); a failed or interrupted send is retried with the same event
 * ids, which the hub counts once. When the page is hidden, pending events go by sendBeacon and
 * stay queued until a later page sees them acknowledged.
 */
(function (w, d) {
  'use strict';
  var script = d.currentScript || d.querySelector('script[data-site][src*="sk.js"]');
  if (!script || w.__skLoaded) { return; }
  w.__skLoaded = true;
  var SITE = script.getAttribute('data-site');
  var BASE = (script.getAttribute('data-endpoint') || script.src.replace(/\/sk\.js(\?.*)?$/, '')).replace(/\/$/, '');
  var COOKIE = script.getAttribute('data-cookie') || '_sk_vid';
  var DAYS = parseInt(script.getAttribute('data-cookie-days') || '395', 10);
  var BATCH = parseInt(script.getAttribute('data-batch') || '20', 10);
  var DELAY = parseInt(script.getAttribute('data-flush-ms') || '500', 10);
  var AUTO = script.getAttribute('data-auto') !== 'false';
  var QKEY = '_sk_q_' + SITE;
  var API = BASE + '/v1/' + encodeURIComponent(SITE);

  function uuid() {
    if (w.crypto && w.crypto.randomUUID) { return w.crypto.randomUUID(); }
    var b = w.crypto.getRandomValues(new Uint8Array(16)), h = [];
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    for (var i = 0; i < 16; i++) { h.push((b[i] + 256).toString(16).slice(1)); }
    return h.slice(0, 4).join('') + '-' + h.slice(4, 6).join('') + '-' + h.slice(6, 8).join('') + '-' +
      h.slice(8, 10).join('') + '-' + h.slice(10).join('');
  }

  /* first-party visitor id: a cookie on the site's own domain, renewed on every visit */
  function visitorId() {
    var m = d.cookie.match(new RegExp('(?:^|; )' + COOKIE + '=([A-Za-z0-9-]{16,64})'));
    var id = m ? m[1] : uuid();
    d.cookie = COOKIE + '=' + id + '; Max-Age=' + (DAYS * 86400) + '; Path=/; SameSite=Lax' +
      (location.protocol === 'https:' ? '; Secure' : '');
    return id;
  }
  var VISITOR = visitorId();

  /* the queue survives page changes; memory only when storage is blocked */
  var mem = [];
  function load() {
    try { return JSON.parse(w.localStorage.getItem(QKEY) || '[]'); } catch (e) { return mem; }
  }
  function save(q) {
    mem = q;
    try { w.localStorage.setItem(QKEY, JSON.stringify(q.slice(-500))); } catch (e) { /* memory only */ }
  }
  function drop(ids) {
    save(load().filter(function (e) { return ids.indexOf(e.id) < 0; }));
  }

  var inflight = false, timer = null, backoff = 0;
  function schedule(ms) {
    if (timer === null) { timer = setTimeout(function () { timer = null; flush(); }, ms); }
  }

  function body(batch) {
    return JSON.stringify({visitor: VISITOR, sent: Date.now(), events: batch.map(function (e) {
      return {type: e.type, id: e.id, ts: e.ts, data: e.data};
    })});
  }

  function flush() {
    if (inflight) { return; }
    var q = load();
    if (!q.length) { return; }
    var batch = q.slice(0, BATCH), ids = batch.map(function (e) { return e.id; });
    inflight = true;
    fetch(API + '/collect', {method: 'POST', body: body(batch), keepalive: true, credentials: 'omit',
                             headers: {'Content-Type': 'text/plain;charset=UTF-8'}})
      .then(function (r) {
        inflight = false;
        if (r.ok || (r.status >= 400 && r.status < 500 && r.status !== 408 && r.status !== 429)) {
          /* acknowledged (committed), or refused for good: a 4xx will not get better by retrying */
          if (!r.ok && w.console) { r.clone().json().then(function (j) { console.warn('shopkeeper:', j.error); }); }
          drop(ids); backoff = 0;
          if (load().length) { schedule(0); }
          return r.json().then(function (j) { sk.last = j; });
        }
        throw new Error('HTTP ' + r.status);
      })
      .catch(function () {
        inflight = false;
        backoff = Math.min(30000, backoff ? backoff * 2 : 1000);
        schedule(backoff);
      });
  }

  function enqueue(type, data) {
    var q = load();
    q.push({type: type, id: uuid(), ts: Date.now(), data: data || {}});
    save(q);
    if (q.length >= BATCH) { flush(); } else { schedule(DELAY); }
  }

  /* the page is going away: hand what is pending to the browser (it stays queued until acked) */
  function beacon() {
    var q = load();
    if (!q.length || !navigator.sendBeacon) { return; }
    for (var i = 0; i < q.length; i += BATCH) {
      navigator.sendBeacon(API + '/collect', new Blob([body(q.slice(i, i + BATCH))], {type: 'text/plain;charset=UTF-8'}));
    }
  }
  w.addEventListener('pagehide', beacon);
  d.addEventListener('visibilitychange', function () { if (d.visibilityState === 'hidden') { beacon(); } });

  function page(data) {
    var out = {url: location.href, title: d.title};
    if (d.referrer) { out.referrer = d.referrer; }
    for (var k in (data || {})) { out[k] = data[k]; }
    enqueue('page_view', out);
  }

  function track(type, data) {
    if (type === 'identify') { throw new Error("use sk('identify', identities)"); }
    enqueue(type, data);
  }

  /* log-in: stitch this visitor (and what they did before) to the known customer */
  function identify(identities, opts) {
    opts = opts || {};
    flush();
    var payload = {visitor: VISITOR, id: uuid(), identities: identities, sent: Date.now()};
    if (opts.traits) { payload.traits = opts.traits; }
    if (opts.signature) { payload.signature = opts.signature; }
    var tries = 0;
    function send() {
      return fetch(API + '/identify', {method: 'POST', body: JSON.stringify(payload), keepalive: true,
                                      credentials: 'omit', headers: {'Content-Type': 'text/plain;charset=UTF-8'}})
        .then(function (r) {
          return r.json().then(function (j) {
            if (r.ok) { return j; }
            if ((r.status >= 500 || r.status === 429) && tries++ < 5) {
              return new Promise(function (ok) { setTimeout(ok, 500 * tries); }).then(send);
            }
            throw new Error(j.error || ('HTTP ' + r.status));
          });
        });
    }
    var p = send();
    if (opts.callback) { p.then(function (j) { opts.callback(null, j); }, function (e) { opts.callback(e); }); }
    return p;
  }

  /* personalisation: ask the hub what to show in a placement and render it */
  function render(el, action) {
    var p = action.payload || {};
    el.textContent = '';
    var box = d.createElement('div');
    box.className = 'sk-offer';
    box.setAttribute('data-sk-offer', action.id);
    var h = d.createElement('strong');
    h.className = 'sk-offer-title';
    h.textContent = p.title || action.id;
    box.appendChild(h);
    if (p.text) {
      var t = d.createElement('p');
      t.className = 'sk-offer-text';
      t.textContent = p.text;
      box.appendChild(t);
    }
    if (p.url && /^(https?:\/\/|\/)/.test(p.url)) {
      var a = d.createElement('a');
      a.className = 'sk-offer-cta';
      a.href = p.url;
      a.textContent = p.cta || 'See offer';
      a.setAttribute('data-sk-track', 'offer:' + action.id);
      box.appendChild(a);
    }
    el.appendChild(box);
  }

  function decide(placement, cb) {
    var url = API + '/decide?visitor=' + encodeURIComponent(VISITOR) + '&placement=' + encodeURIComponent(placement) +
      '&url=' + encodeURIComponent(location.href);
    return fetch(url, {credentials: 'omit'}).then(function (r) { return r.json(); }).then(function (j) {
      var actions = j.actions || [];
      if (cb) { cb(actions); }
      return actions;
    });
  }

  function placements() {
    var els = d.querySelectorAll('[data-sk-placement]');
    Array.prototype.forEach.call(els, function (el) {
      var name = el.getAttribute('data-sk-placement');
      decide(name).then(function (actions) {
        var top = actions[0];
        if (!top) { el.setAttribute('data-sk-empty', ''); return; }
        render(el, top);
        enqueue('offer_shown', {offer: top.id, placement: name, url: location.href});
      });
    });
  }

  function onClick(ev) {
    var el = ev.target && ev.target.closest && ev.target.closest('a,button,[data-sk-track]');
    if (!el) { return; }
    var label = el.getAttribute('data-sk-track') || el.id || (el.textContent || '').trim().slice(0, 80);
    var data = {url: location.href, target: label};
    if (el.href) { data.href = String(el.href).slice(0, 2048); }
    enqueue('click', data);
  }

  var api = {
    page: page, track: track, identify: identify, decide: decide, flush: flush, placements: placements,
    visitor: VISITOR, site: SITE
  };
  var queued = (w.sk && w.sk.q) || [];
  var sk = function (cmd) {
    var fn = api[cmd];
    if (typeof fn !== 'function') { throw new Error('shopkeeper: unknown command ' + cmd); }
    return fn.apply(null, Array.prototype.slice.call(arguments, 1));
  };
  for (var k in api) { sk[k] = api[k]; }
  w.sk = sk;

  if (AUTO) {
    d.addEventListener('click', onClick, true);
    page();
  }
  for (var i = 0; i < queued.length; i++) { sk.apply(null, queued[i]); }
  if (d.readyState === 'loading') { d.addEventListener('DOMContentLoaded', placements); } else { placements(); }
  flush();
})(window, document);
