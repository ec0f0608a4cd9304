// The live scoreboard: reads /events (server-sent events, one Snapshot JSON per
// message) and /history (the score so far), and draws everything itself.
(function () {
  'use strict';

  const SVG = 'http://www.w3.org/2000/svg';
  const MAX_POINTS = 7200;
  const STALE_MS = 5000;
  const $ = (id) => document.getElementById(id);

  // second -> score, for the chart.
  const series = new Map();
  let last = null;        // the latest snapshot
  let lastAt = 0;         // Date.now() when it came
  let state = 'waiting';  // waiting | live | stale | reconnecting | ended
  let seenEvents = null;  // keys of the events shown, to mark new ones

  // ---- formatting -------------------------------------------------------------

  const MINUS = '\u2212';

  function group(n) {
    const s = Math.abs(Math.round(n)).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    return (Math.round(n) < 0 ? MINUS : '') + s;
  }

  function signed(n) {
    const r = Math.round(n);
    return (r > 0 ? '+' : '') + group(r);
  }

  function num(n, digits) {
    if (!Number.isFinite(n)) return '—';
    if (Math.abs(n) >= 100) return group(n);
    return n.toFixed(digits);
  }

  // ms splits a latency in milliseconds into a number and its unit.
  function ms(v) {
    if (!Number.isFinite(v)) return ['—', ''];
    if (v >= 1000) return [(v / 1000).toFixed(v >= 10000 ? 1 : 2), 's'];
    if (v >= 100) return [String(Math.round(v)), 'ms'];
    if (v >= 10) return [v.toFixed(1), 'ms'];
    return [v.toFixed(2), 'ms'];
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const ss = String(s % 60).padStart(2, '0');
    return h > 0 ? h + ':' + String(m).padStart(2, '0') + ':' + ss : m + ':' + ss;
  }

  function setText(id, text) {
    const el = $(id);
    if (el && el.textContent !== text) el.textContent = text;
    return el;
  }

  // setUnit shows [number, unit], the unit smaller.
  function setUnit(id, [value, unit]) {
    const el = $(id);
    if (el.dataset.shown === value + unit) return;
    el.dataset.shown = value + unit;
    if (!unit) {
      el.replaceChildren(value);
      return;
    }
    const small = document.createElement('small');
    small.textContent = unit;
    el.replaceChildren(value, ' ', small);
  }

  // ---- status -------------------------------------------------------------------

  const STATUS_TEXT = {
    waiting: 'waiting for data',
    live: 'live',
    stale: 'no data',
    reconnecting: 'reconnecting',
    ended: 'run ended',
  };

  function setStatus(s) {
    state = s;
    const el = $('status');
    el.className = 'status ' + s;
    setText('status-text', STATUS_TEXT[s] || s);
  }

  // ---- the score ----------------------------------------------------------------

  // fit shrinks an element's font until its text fits the element's box (or, for
  // the score, its panel).
  function fit(el, room) {
    el.style.fontSize = '';
    if (!(room > 0)) room = el.clientWidth;
    if (el.scrollWidth > room && room > 0) {
      const size = parseFloat(getComputedStyle(el).fontSize);
      el.style.fontSize = Math.floor(size * room / el.scrollWidth * 0.98) + 'px';
    }
  }

  function fitAll() {
    const score = $('score');
    fit(score, score.parentElement.clientWidth - 2 * parseFloat(getComputedStyle(score.parentElement).paddingLeft));
    document.querySelectorAll('.tile b').forEach((el) => fit(el));
  }

  function showScore(s, prev) {
    const el = setText('score', group(s.score));
    el.classList.toggle('negative', Math.round(s.score) < 0);
    if (prev && prev.score !== s.score) {
      el.classList.remove('up', 'down');
      void el.offsetWidth; // restart the transition
      el.classList.add(s.score > prev.score ? 'up' : 'down');
      clearTimeout(showScore.timer);
      showScore.timer = setTimeout(() => el.classList.remove('up', 'down'), 700);
    }

    const t = Number(s.trend) || 0;
    const dir = Math.round(t) > 0 ? 'up' : Math.round(t) < 0 ? 'down' : 'flat';
    $('trend').className = 'trend ' + dir;
    setText('trend-arrow', dir === 'up' ? '▲' : dir === 'down' ? '▼' : '▬');
    setText('trend-value', signed(t));
    const cost = Number(s.cost) || 0;
    setText('cost', '$' + group(Math.trunc(cost)) + '.' + Math.round(Math.abs(cost % 1) * 100).toString().padStart(2, '0'));
  }

  function showTiles(s) {
    // Answers per second, and the arrivals per second offered when the run says.
    const target = Number(s.target_rate) || 0;
    setUnit('rate', [num(Number(s.rate) || 0, 1), target > 0 ? '/ ' + num(target, 1).replace(/\.0$/, '') : '']);
    for (const k of ['correct', 'wrong', 'errors', 'timeouts', 'dropped', 'inflight']) {
      const v = Number(s[k]) || 0;
      setText(k, group(v)).classList.toggle('zero', v === 0 && k !== 'correct' && k !== 'inflight');
    }
    const l = s.latency_ms || {};
    setUnit('p50', ms(Number(l.p50)));
    setUnit('p99', ms(Number(l.p99)));
    setText('elapsed', clock(Number(s.second) || 0));
    // The planned length, when the run has one: "/ 5:00" and a progress bar.
    const planned = Number(s.duration_s) || 0;
    setText('duration', planned > 0 ? '/ ' + clock(planned) : '');
    $('progress-bar').hidden = !(planned > 0);
    if (planned > 0) {
      const done = Number(s.elapsed_s) || Number(s.second) || 0;
      $('progress').style.width = Math.min(100, 100 * done / planned).toFixed(2) + '%';
    }
    fitAll();
  }

  // ---- score events -------------------------------------------------------------

  function showEvents(s) {
    const events = Array.isArray(s.events) ? s.events.slice().reverse() : [];
    const ol = $('events');
    const keys = new Set();
    const items = [];
    for (const e of events) {
      const key = e.at_ms + '|' + e.points + '|' + e.reason;
      keys.add(key);
      const li = document.createElement('li');
      if (seenEvents && !seenEvents.has(key)) li.className = 'fresh';
      const at = document.createElement('span');
      at.className = 'at';
      at.textContent = clock((Number(e.at_ms) || 0) / 1000);
      const pts = document.createElement('span');
      const p = Number(e.points) || 0;
      pts.className = 'pts ' + (p >= 0 ? 'plus' : 'minus');
      pts.textContent = signed(p);
      const reason = document.createElement('span');
      reason.className = 'reason';
      reason.textContent = String(e.reason || '');
      reason.title = reason.textContent;
      li.append(at, pts, reason);
      items.push(li);
    }
    if (items.length === 0) {
      const li = document.createElement('li');
      li.className = 'empty';
      li.textContent = 'no score events yet';
      items.push(li);
    }
    ol.replaceChildren(...items);
    seenEvents = keys;
  }

  // ---- the chart ----------------------------------------------------------------

  // addPoint puts a point on the chart, thinning the series past MAX_POINTS.
  function addPoint(second, score) {
    if (!Number.isFinite(second) || !Number.isFinite(score)) return;
    series.set(second, score);
    if (series.size > MAX_POINTS) {
      const keys = [...series.keys()].sort((a, b) => a - b);
      keys.forEach((k, i) => { if (i % 2 === 1 && i !== keys.length - 1) series.delete(k); });
    }
  }

  // niceStep is 1, 2 or 5 times a power of ten, about span/n.
  function niceStep(span, n) {
    const raw = span / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
  }

  function svgEl(name, attrs, text) {
    const el = document.createElementNS(SVG, name);
    for (const k in attrs) el.setAttribute(k, attrs[k]);
    if (text !== undefined) el.textContent = text;
    return el;
  }

  let drawPending = false;
  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; drawChart(); });
  }

  function drawChart() {
    const svg = $('chart');
    const w = svg.clientWidth;
    const h = svg.clientHeight;
    if (!w || !h) return;
    svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    const pts = [...series.entries()].sort((a, b) => a[0] - b[0]);
    const grid = $('chart-grid');
    const line = $('chart-line');
    const area = $('chart-area');
    const dot = $('chart-dot');
    const nodes = [];
    if (pts.length === 0) {
      grid.replaceChildren(svgEl('text', { x: w / 2, y: h / 2, 'text-anchor': 'middle' }, 'waiting for the first score…'));
      line.setAttribute('d', '');
      area.setAttribute('d', '');
      dot.setAttribute('r', 0);
      return;
    }

    const fs = parseFloat(getComputedStyle(svg).fontSize) || 14;
    const x0 = pts[0][0];
    const x1 = Math.max(pts[pts.length - 1][0], x0 + 60);
    let lo = Math.min(0, ...pts.map((p) => p[1]));
    let hi = Math.max(0, ...pts.map((p) => p[1]));
    if (hi - lo < 10) hi = lo + 10;
    const step = niceStep(hi - lo, 4);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    const widest = Math.max(group(lo).length, group(hi).length);
    const padL = Math.ceil(widest * fs * 0.62) + 14, padR = fs, padT = fs, padB = fs * 2;
    const X = (s) => padL + (s - x0) / (x1 - x0) * (w - padL - padR);
    const Y = (v) => padT + (hi - v) / (hi - lo) * (h - padT - padB);

    for (let v = lo; v <= hi + step / 2; v += step) {
      const y = Y(v).toFixed(1);
      nodes.push(svgEl('line', { x1: padL, x2: w - padR, y1: y, y2: y, class: Math.abs(v) < step / 2 ? 'zero-line' : 'grid-line' }));
      nodes.push(svgEl('text', { x: padL - 10, y: y, 'text-anchor': 'end', 'dominant-baseline': 'middle' }, group(v)));
    }
    // Time ticks on round seconds: about five of them.
    const steps = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
    const tstep = steps.find((v) => (x1 - x0) / v <= 6) || 3600 * Math.ceil((x1 - x0) / 6 / 3600);
    for (let s = Math.ceil(x0 / tstep) * tstep; s <= x1; s += tstep) {
      const x = X(s);
      const anchor = x < padL + 20 ? 'start' : x > w - padR - 20 ? 'end' : 'middle';
      nodes.push(svgEl('text', { x: x.toFixed(1), y: h - fs * 0.4, 'text-anchor': anchor }, clock(s)));
    }
    grid.replaceChildren(...nodes);

    let d = '';
    for (const [s, v] of pts) d += (d ? 'L' : 'M') + X(s).toFixed(1) + ',' + Y(v).toFixed(1);
    line.setAttribute('d', d);
    const base = Y(Math.min(Math.max(0, lo), hi)).toFixed(1);
    area.setAttribute('d', d + 'L' + X(pts[pts.length - 1][0]).toFixed(1) + ',' + base + 'L' + X(pts[0][0]).toFixed(1) + ',' + base + 'Z');
    const [ls, lv] = pts[pts.length - 1];
    dot.setAttribute('cx', X(ls).toFixed(1));
    dot.setAttribute('cy', Y(lv).toFixed(1));
    dot.setAttribute('r', 6);
  }

  // ---- data ---------------------------------------------------------------------

  function apply(s) {
    if (!s || typeof s !== 'object' || !Number.isFinite(Number(s.score))) return;
    s.score = Number(s.score);
    const prev = last;
    last = s;
    lastAt = Date.now();
    if (s.final) setStatus('ended'); // the run is over: no snapshot follows
    else if (state !== 'live') setStatus('live');
    showScore(s, prev);
    showTiles(s);
    showEvents(s);
    const second = Number(s.second) || 0;
    if (prev && second < (Number(prev.second) || 0)) series.clear(); // a new run
    addPoint(second, s.score);
    scheduleDraw();
  }

  function loadHistory() {
    fetch('history', { cache: 'no-store' })
      .then((r) => (r.ok ? r.json() : []))
      .then((pts) => {
        if (!Array.isArray(pts)) return;
        for (const p of pts) {
          // Seconds the stream has already given keep the stream's score.
          if (Array.isArray(p) && !series.has(p[0])) addPoint(Number(p[0]), Number(p[1]));
        }
        scheduleDraw();
      })
      .catch(() => {});
  }

  function connect() {
    const es = new EventSource('events');
    es.onmessage = (e) => {
      let s;
      try { s = JSON.parse(e.data); } catch (_) { return; }
      apply(s);
    };
    es.addEventListener('end', () => {
      es.close();
      setStatus('ended');
    });
    es.onerror = () => {
      if (state === 'ended') return;
      setStatus(es.readyState === EventSource.CLOSED ? 'ended' : 'reconnecting');
    };
    es.onopen = () => {
      if (last && Date.now() - lastAt < STALE_MS) setStatus('live');
      else setStatus('waiting');
    };
  }

  setInterval(() => {
    if (state === 'live' && Date.now() - lastAt > STALE_MS) setStatus('stale');
  }, 1000);
  window.addEventListener('resize', () => { fitAll(); scheduleDraw(); });

  connect();
  loadHistory();
  scheduleDraw();
})();
