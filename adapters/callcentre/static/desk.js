/* Shopkeeper agent desk: live screen-pop over Server-Sent Events, outcome back to the hub. */
(function (w, d) {
  'use strict';
  var $ = function (id) { return d.getElementById(id); };
  var state = {call: null, pop: null, offer: null, answer: ''};
  /* for tests and benchmarks: when each pop reached the screen (ms since epoch) */
  var desk = w.skDesk = {timings: [], pops: 0, state: state};

  var dispositions = JSON.parse(d.getElementById('desk').getAttribute('data-dispositions') || '[]');
  dispositions.forEach(function (v) {
    var o = d.createElement('option');
    o.value = v; o.textContent = v.replace(/_/g, ' ').replace(/^./, function (c) { return c.toUpperCase(); });
    $('disposition').appendChild(o);
  });

  function el(tag, cls, text) {
    var e = d.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; }

  function ago(iso) {
    var t = Date.parse(iso);
    if (isNaN(t)) { return ''; }
    var s = Math.max(0, (Date.now() - t) / 1000);
    if (s < 60) { return Math.round(s) + ' s ago'; }
    if (s < 3600) { return Math.round(s / 60) + ' min ago'; }
    if (s < 86400) { return Math.round(s / 3600) + ' h ago'; }
    return new Date(t).toLocaleDateString();
  }
  function initials(name) {
    var parts = String(name || '?').replace(/[^A-Za-z0-9 ]/g, ' ').trim().split(/\s+/);
    return ((parts[0] || '?')[0] + (parts.length > 1 ? parts[parts.length - 1][0] : '')).toUpperCase();
  }
  function money(v) { return (Number(v) || 0).toLocaleString(undefined, {style: 'currency', currency: 'EUR'}); }
  function label(s) { return String(s).replace(/_/g, ' '); }

  var DETAIL = ['url', 'offer', 'amount', 'order_id', 'sku', 'campaign', 'disposition', 'notes', 'name', 'target'];
  function detail(it) {
    var data = it.data || {}, out = [];
    DETAIL.forEach(function (k) {
      if (data[k] !== undefined && data[k] !== '') {
        var v = String(data[k]);
        if (k === 'url') { v = v.replace(/^https?:\/\/[^/]+/, '') || '/'; }
        out.push(k === 'url' ? v : label(k) + ': ' + v);
      }
    });
    return out.join(' · ');
  }

  function renderCustomer(c, call) {
    if (!c) {
      $('cust-name').textContent = 'Unknown caller';
      $('cust-sub').textContent = call.caller + ' · not in the hub yet; the outcome creates the profile';
      $('cust-avatar').textContent = '?';
      ['cust-facts', 'cust-identities', 'cust-consents', 'cust-segments', 'cust-scores', 'history'].forEach(
        function (id) { clear($(id)); });
      $('history').appendChild(el('li', 'muted', 'No history.'));
      return;
    }
    $('cust-name').textContent = c.name;
    $('cust-avatar').textContent = initials(c.name);
    var t = c.traits || {};
    $('cust-sub').textContent = [t.city, 'customer ' + c.id].filter(Boolean).join(' · ');
    var h = c.hard_facts || {}, facts = clear($('cust-facts'));
    [[h.orders || 0, 'orders'], [money(h.total_spend), 'total spend'],
     [h.interactions || 0, 'interactions'], [label(h.last_channel || '—'), 'last channel']].forEach(function (f) {
      var box = el('div', 'fact');
      box.appendChild(el('b', '', f[0]));
      box.appendChild(el('span', '', f[1]));
      facts.appendChild(box);
    });
    var ids = clear($('cust-identities'));
    c.identities.forEach(function (i) {
      var li = el('li');
      li.appendChild(el('span', 'ns', i.namespace));
      li.appendChild(d.createTextNode(i.namespace === 'cookie' ? i.value.slice(0, 8) + '…' : i.value));
      ids.appendChild(li);
    });
    var cons = clear($('cust-consents'));
    if (!c.consents.length) { cons.appendChild(el('li', '', 'none recorded — do not market')); }
    c.consents.forEach(function (x) {
      cons.appendChild(el('li', x.granted ? 'ok' : 'no',
        (x.granted ? '✓ ' : '✕ ') + x.channel + (x.purpose !== 'marketing' ? ' / ' + x.purpose : '')));
    });
    var segs = clear($('cust-segments'));
    if (!c.segments.length) { segs.appendChild(el('li', '', 'none')); }
    c.segments.forEach(function (s) { segs.appendChild(el('li', '', label(s))); });
    var sc = clear($('cust-scores'));
    var names = Object.keys(c.scores || {});
    if (!names.length) { sc.appendChild(el('div', 'muted small', 'No scores yet.')); }
    names.forEach(function (k) {
      var v = Number(c.scores[k]), row = el('div', 'score'), bar = el('div', 'bar'), fill = el('i');
      var pct = v <= 1 ? v * 100 : Math.min(100, v);
      fill.style.width = Math.max(2, pct) + '%';
      bar.appendChild(fill);
      row.appendChild(el('span', '', label(k)));
      row.appendChild(bar);
      row.appendChild(el('b', '', v <= 1 ? Math.round(v * 100) + '%' : Math.round(v)));
      sc.appendChild(row);
    });
    var hist = clear($('history')), before = state.seen || {};
    state.seen = {};
    if (!c.history.length) { hist.appendChild(el('li', 'muted', 'No history yet.')); }
    c.history.forEach(function (it) {
      var li = el('li', before[it.key] || !state.pop ? '' : 'fresh');
      li.setAttribute('data-type', it.type);
      li.setAttribute('data-channel', it.channel);
      state.seen[it.key] = true;
      li.appendChild(el('span', 'when', ago(it.at)));
      li.appendChild(el('span', 'chan ' + it.channel, it.channel));
      var what = el('span', 'what');
      what.appendChild(el('b', '', label(it.type)));
      var det = detail(it);
      if (det) { what.appendChild(d.createTextNode(' ')); what.appendChild(el('div', 'detail', det)); }
      li.appendChild(what);
      hist.appendChild(li);
    });
  }

  function renderAction(actions) {
    var body = clear($('nba-body'));
    state.offer = null;
    var top = actions[0];
    if (!top) { body.appendChild(el('p', 'muted', 'No recommendation for this caller.')); return; }
    var p = top.payload || {};
    body.setAttribute('data-action', top.id);
    body.appendChild(el('p', 'offer-title', p.title || label(top.id)));
    if (p.text) { body.appendChild(el('p', 'offer-text', p.text)); }
    var r = el('div', 'reason');
    r.appendChild(el('b', '', 'Why'));
    r.appendChild(d.createTextNode(top.reason || '—'));
    body.appendChild(r);
    if (top.kind === 'offer') {
      state.offer = top.id;
      var row = el('div', 'actions');
      var yes = el('button', 'btn accept', 'Accepted'), no = el('button', 'btn decline', 'Declined');
      yes.type = no.type = 'button';
      yes.id = 'offer-accept'; no.id = 'offer-decline';
      function pick(answer, btn, other) {
        state.answer = state.answer === answer ? '' : answer;
        btn.classList.toggle('selected', state.answer === answer);
        other.classList.remove('selected');
        $('offer-response').value = state.answer;
      }
      yes.onclick = function () { pick('accepted', yes, no); };
      no.onclick = function () { pick('declined', no, yes); };
      row.appendChild(yes); row.appendChild(no);
      body.appendChild(row);
    }
    if (actions.length > 1) {
      body.appendChild(el('div', 'alt', 'Also: ' + actions.slice(1).map(function (a) {
        return (a.payload && a.payload.title) || label(a.id);
      }).join(', ')));
    }
  }

  function render(pop) {
    var call = pop.call, fresh = !state.call || state.call.id !== call.id;
    if (fresh) {
      state.answer = ''; state.seen = {}; state.pop = null;
      $('offer-response').value = ''; $('notes').value = '';
      $('outcome-status').textContent = ''; $('outcome-status').className = 'small';
      $('outcome-submit').disabled = false;
    }
    state.call = call;
    $('idle').hidden = true;
    $('pop').hidden = false;
    $('pop').setAttribute('data-call', call.id);
    $('call-caller').textContent = call.caller;
    $('call-meta').textContent = call.direction + ' call · ' + call.id;
    var done = !!pop.outcome;
    $('call-status').textContent = done ? 'Outcome saved' : (call.status === 'ended' ? 'Call ended' : 'Incoming call');
    $('call-status').className = 'badge' + (done || call.status === 'ended' ? ' done' : '');
    renderCustomer(pop.customer, call);
    if (fresh || !pop.outcome) { renderAction(pop.actions || []); }
    var old = d.querySelector('.warning');
    if (old) { old.parentNode.removeChild(old); }
    if (pop.warning) { $('pop').insertBefore(el('div', 'warning', pop.warning), $('pop').children[1]); }
    state.pop = pop;
    desk.pops += 1;
    var now = Date.now();
    $('pop').setAttribute('data-rendered-at', String(now));
    desk.timings.push({call_id: call.id, reason: pop.reason, received_ms: pop.received_ms, rendered_ms: now});
    if (desk.timings.length > 2000) { desk.timings.shift(); }
  }

  setInterval(function () {
    if (state.call) {
      var s = Math.round((Date.now() - state.call.started) / 1000);
      $('call-timer').textContent = Math.floor(s / 60) + ':' + String(s % 60).padStart(2, '0');
    }
  }, 1000);

  $('outcome-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    if (!state.call) { return; }
    var status = $('outcome-status');
    $('outcome-submit').disabled = true;
    status.textContent = 'Saving…'; status.className = 'small';
    var payload = {disposition: $('disposition').value, notes: $('notes').value,
                   offer: state.answer ? state.offer : '', offer_response: state.answer};
    fetch('/desk/calls/' + encodeURIComponent(state.call.id) + '/outcome', {
      method: 'POST', credentials: 'same-origin', body: JSON.stringify(payload),
      headers: {'Content-Type': 'application/json', 'X-Requested-With': 'shopkeeper-desk'}
    }).then(function (r) { return r.json().then(function (j) { return [r, j]; }); }).then(function (rj) {
      if (!rj[0].ok) { throw new Error(rj[1].error || 'HTTP ' + rj[0].status); }
      status.textContent = 'Saved to the customer’s history.'; status.className = 'small ok';
      status.setAttribute('data-saved', state.call.id);
    }).catch(function (e) {
      status.textContent = 'Not saved: ' + e.message; status.className = 'small err';
      $('outcome-submit').disabled = false;
    });
  });

  function connect() {
    var es = new EventSource('/desk/events');
    var live = $('live');
    es.addEventListener('hello', function () { live.className = 'live on'; live.lastChild.textContent = 'Live'; });
    es.addEventListener('pop', function (e) { render(JSON.parse(e.data)); });
    es.addEventListener('ended', function (e) {
      var m = JSON.parse(e.data);
      if (state.call && state.call.id === m.call_id && !(state.pop && state.pop.outcome)) {
        $('call-status').textContent = 'Call ended'; $('call-status').className = 'badge done';
      }
    });
    es.addEventListener('outcome', function (e) {
      var m = JSON.parse(e.data);
      if (state.call && state.call.id === m.call_id) {
        $('call-status').textContent = 'Outcome saved'; $('call-status').className = 'badge done';
      }
    });
    es.onerror = function () {
      live.className = 'live off'; live.lastChild.textContent = 'Reconnecting…';
      if (es.readyState === 2) { es.close(); setTimeout(connect, 2000); }
    };
  }
  connect();
})(window, document);
