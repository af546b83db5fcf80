// The web view's console, loaded on demand: xterm.js (vendor/, from npm's
// @xterm/xterm) over an interactive exec of /bin/sh in the instance
// (POST /1.0/instances/NAME/exec with wait-for-websocket), its operation's
// websocket "0" carrying the terminal's bytes both ways and "control"
// carrying window resizes, as `lxc exec` does.
'use strict';

(function () {
  let current = null;

  function load(tag, attrs) {
    return new Promise((resolve, reject) => {
      const el = document.createElement(tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      el.onload = resolve;
      el.onerror = () => reject(new Error(`${attrs.src || attrs.href} did not load`));
      document.head.append(el);
    });
  }

  let vendor = null;
  function loadVendor() {
    if (!vendor) {
      vendor = Promise.all([
        load('link', { rel: 'stylesheet', href: '/ui/vendor/xterm.css' }),
        load('script', { src: '/ui/vendor/xterm.js' }).then(() => load('script', { src: '/ui/vendor/addon-fit.js' })),
      ]);
    }
    return vendor;
  }

  function socket(op, secret) {
    const ws = new WebSocket(`wss://${location.host}${op}/websocket?secret=${encodeURIComponent(secret)}`);
    ws.binaryType = 'arraybuffer';
    return ws;
  }

  function opened(ws) {
    return new Promise((resolve, reject) => {
      ws.addEventListener('open', resolve, { once: true });
      ws.addEventListener('error', () => reject(new Error('the websocket failed')), { once: true });
    });
  }

  function close() {
    if (!current) return;
    const c = current;
    current = null;
    for (const ws of [c.data, c.control]) { try { ws.close(); } catch (_) { /* closed */ } }
    window.removeEventListener('resize', c.onresize);
    c.term.dispose();
  }

  async function open(box, name, api) {
    close();
    await loadVendor();
    const el = document.createElement('div');
    el.id = 'terminal';
    el.setAttribute('role', 'region');
    el.setAttribute('aria-label', `Shell in ${name}`);
    const note = document.createElement('p');
    note.className = 'muted';
    note.textContent = 'A shell in the instance. Tab stays in the terminal; press Escape then Tab to leave it.';
    box.replaceChildren(note, el);
    const term = new window.Terminal({ cursorBlink: true, fontSize: 14, scrollback: 2000, screenReaderMode: true });
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(el);
    fit.fit();
    const r = await api('POST', `/1.0/instances/${encodeURIComponent(name)}/exec`, {
      command: ['/bin/sh'],
      environment: { TERM: 'xterm-256color' },
      interactive: true,
      'wait-for-websocket': true,
      width: term.cols,
      height: term.rows,
    });
    const fds = r.metadata.metadata.fds;
    const control = socket(r.operation, fds.control);
    const data = socket(r.operation, fds['0']);
    await Promise.all([opened(control), opened(data)]);
    const utf8 = new TextEncoder();
    data.onmessage = (m) => term.write(typeof m.data === 'string' ? m.data : new Uint8Array(m.data));
    data.onclose = () => term.write('\r\n[the shell ended]\r\n');
    term.onData((d) => { if (data.readyState === WebSocket.OPEN) data.send(utf8.encode(d)); });
    term.onResize(({ cols, rows }) => {
      if (control.readyState === WebSocket.OPEN) {
        control.send(JSON.stringify({ command: 'window-resize', args: { width: String(cols), height: String(rows) } }));
      }
    });
    const onresize = () => fit.fit();
    window.addEventListener('resize', onresize);
    // Escape, then Tab: leave the terminal (keyboard users are not trapped).
    let escaped = false;
    term.attachCustomKeyEventHandler((ev) => {
      if (ev.type !== 'keydown') return true;
      if (ev.key === 'Tab' && escaped) { escaped = false; return false; }
      escaped = ev.key === 'Escape';
      return true;
    });
    current = { term, data, control, onresize };
    term.focus();
  }

  /** The open terminal's size (what the last resize told the instance). */
  function size() {
    return current ? { cols: current.term.cols, rows: current.term.rows } : null;
  }

  window.KanteConsole = { open, close, size };
})();
