// The clusterchat web client: plain ES modules, no build step (see README, "Web client").
//
// State lives in `S`; `render*` functions rebuild parts of the page from it. User text only ever goes
// into the page as text nodes (`el()` below), never as HTML.

import { Connection, Refused, Unanswered } from './conn.js';

// ---------------------------------------------------------------------------------------------------
// Small helpers

const $ = (sel, root = document) => root.querySelector(sel);
const T = (name) => $(`[data-test="${name}"]`);

/** An element with attributes and children (strings become text nodes). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** localStorage, namespaced; ignores a storage that refuses (private mode). */
const store = {
  get(key) {
    try { return localStorage.getItem(`clusterchat.${key}`); } catch { return null; }
  },
  set(key, value) {
    try {
      if (value === null || value === undefined) localStorage.removeItem(`clusterchat.${key}`);
      else localStorage.setItem(`clusterchat.${key}`, value);
    } catch { /* storage unavailable: the session just is not remembered */ }
  },
};

function randomHex(bytes) {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

function timeOf(ts) {
  if (typeof ts !== 'number') return '';
  const d = new Date(ts);
  const now = new Date();
  const hm = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === now.toDateString() ? hm : `${d.toLocaleDateString()} ${hm}`;
}

function toast(text, kind = 'info') {
  const item = el('li', { 'data-test': 'toast', class: kind }, text);
  T('toasts').append(item);
  setTimeout(() => item.remove(), 6000);
}

function explain(err) {
  if (err instanceof Refused) return err.message;
  if (err instanceof Unanswered) return 'No answer from the server; try again.';
  return String(err);
}

// ---------------------------------------------------------------------------------------------------
// State

const S = {
  me: null, // {id, name} once logged in
  loggingIn: false,
  convs: new Map(), // conv -> Conv
  order: [], // conv ids, most recent first
  current: null, // open conv id
  tab: 'chats',
  view: 'list', // phone: which pane shows (list | chat | members)
  friends: new Map(), // id -> {id, name, state}
  incoming: [], outgoing: [], blocked: [],
  groups: new Map(), // id -> {id, groupname, groupdesc, users: [{id, name, role, state}]}
  names: new Map(), // id -> name, from everything seen
  typing: new Map(), // conv -> {id, until}
  outbox: [], // [{cid, conv, msg, state: 'sending'|'failed', error?}]
  found: null, // FIND_USER result
  confirm: null, // the member action awaiting a second click
};

function newConv(conv, name) {
  return {
    conv, name: name ?? conv, last: 0, read: 0, peerRead: 0,
    msgs: new Map(), notes: [], loaded: false, loading: false, more: true, readSent: 0,
  };
}

function conv(id, name) {
  let c = S.convs.get(id);
  if (!c) {
    c = newConv(id, name ?? convName(id));
    S.convs.set(id, c);
    S.order.push(id);
  }
  return c;
}

function convName(id) {
  const n = Number(id.slice(1));
  if (id[0] === 'g') return S.groups.get(n)?.groupname ?? `group ${n}`;
  return nameOf(n);
}

function nameOf(id) {
  if (S.me && id === S.me.id) return S.me.name;
  return S.friends.get(id)?.name ?? S.names.get(id) ?? `user ${id}`;
}

function learn(id, name) {
  if (typeof id === 'number' && typeof name === 'string') S.names.set(id, name);
}

function toFront(id) {
  S.order = [id, ...S.order.filter((c) => c !== id)];
}

const unread = (c) => Math.max(0, c.last - c.read);

// ---------------------------------------------------------------------------------------------------
// Connection and login

const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
let bannerTimer = null;
let pendingLogin = null; // a login the user asked for while the connection was down

const conn = new Connection(wsUrl, {
  onOpen() {
    showBanner(false);
    if (pendingLogin) {
      const p = pendingLogin;
      pendingLogin = null;
      passwordLogin(p);
    } else if (store.get('token') && store.get('id')) {
      tokenLogin();
    } else {
      showLogin();
    }
  },
  onStatus(status) {
    if (status.state === 'open') return;
    if (S.me) {
      S.me.online = false;
      for (const m of S.outbox) if (m.state === 'sending') m.state = 'failed';
      renderChat();
    }
    // A short drop (reconnected at once) shows nothing; a longer one shows the banner.
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(() => { if (!conn.open) showBanner(true); }, 800);
    if (status.state === 'down') updateBannerText();
  },
  onFrame: handlePush,
});

function showBanner(on) {
  clearTimeout(bannerTimer);
  T('banner').hidden = !on;
  if (on) updateBannerText();
}

function updateBannerText() {
  const secs = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
  T('banner-text').textContent = conn.ws
    ? 'Cannot reach the server. Connecting…'
    : `Cannot reach the server. Reconnecting${secs > 0 ? ` in ${secs} s` : ''}…`;
}
setInterval(() => { if (!T('banner').hidden && !conn.open) updateBannerText(); }, 1000);

function defaultDevice() {
  let d = store.get('device');
  if (!d) {
    d = `browser-${randomHex(3)}`;
    store.set('device', d);
  }
  return d;
}

// Shows the login screen's form `id` (`login-form` or `register-form`) and selects its tab.
function showForm(id) {
  for (const o of document.querySelectorAll('#login [data-form]')) {
    o.setAttribute('aria-selected', String(o.dataset.form === id));
    document.getElementById(o.dataset.form).hidden = o.dataset.form !== id;
  }
}

// `notice`: the message is news (logged out), not a failure.
function showLogin(message = '', notice = false) {
  S.me = null;
  document.body.dataset.screen = 'login';
  showForm('login-form');
  const form = T('login-form');
  const known = store.get('name') || store.get('id');
  if (!form.elements.id.value && known) form.elements.id.value = known;
  if (!form.elements.device.value) form.elements.device.value = defaultDevice();
  loginStatus(message, notice);
}

/** The login screen's status line: a failure (in the error colour) or, with `notice`, news. */
function loginStatus(text, notice = false) {
  T('login-error').textContent = text;
  T('login-error').classList.toggle('notice', notice);
}

// `account` names whose login it is: `{ id }` or `{ name }` (the server takes either).
async function passwordLogin({ account, password, device }) {
  if (!conn.open) {
    pendingLogin = { account, password, device };
    loginStatus('Waiting for the server…', true);
    conn.connect();
    return;
  }
  loginStatus('Logging in…', true);
  try {
    const ack = await conn.request({ msgid: 1, ...account, password, v: 2, device });
    store.set('id', String(ack.id));
    store.set('name', ack.name);
    store.set('device', device);
    store.set('token', ack.token);
    loggedIn(ack);
  } catch (err) {
    if (err instanceof Refused && err.errno === 2) {
      loginStatus(`${err.message}: choose another name for this device, or log it out there.`);
    } else if (err instanceof Refused && err.errno === 1) {
      loginStatus('Wrong name, user id or password.');
    } else {
      loginStatus(explain(err));
    }
  }
}

let tokenRetries = 0;
async function tokenLogin() {
  const id = Number(store.get('id'));
  const device = defaultDevice();
  try {
    const ack = await conn.request({ msgid: 1, id, token: store.get('token'), v: 2, device });
    tokenRetries = 0;
    loggedIn(ack);
  } catch (err) {
    if (err instanceof Refused && err.errno === 2 && tokenRetries < 20) {
      // After a reload the server may not have seen the old page's socket close yet.
      tokenRetries += 1;
      setTimeout(() => { if (conn.open && !S.me) tokenLogin(); }, 300 * tokenRetries);
    } else if (err instanceof Refused && (err.errno === 107 || err.errno === 109) && tokenRetries < 20) {
      // Storage down or throttled: the token is still good; try it again in a while.
      tokenRetries += 1;
      showBanner(true);
      T('banner-text').textContent = `The server cannot log you in right now (${err.message}); trying again…`;
      setTimeout(() => { if (conn.open && !S.me) tokenLogin(); }, 3000);
    } else if (err instanceof Refused && err.errno === 1) {
      store.set('token', null);
      showLogin('Your session has ended; log in again.');
    } else if (err instanceof Unanswered) {
      // The connection dropped: onOpen tries again.
    } else {
      showLogin(explain(err));
    }
  }
}

function loggedIn(ack) {
  const first = !S.me || S.me.id !== ack.id;
  if (first) resetState();
  S.me = { id: ack.id, name: ack.name, device: ack.device, online: true };
  showBanner(false);
  learn(ack.id, ack.name);
  store.set('token', ack.token);
  document.body.dataset.screen = 'main';
  T('me').textContent = ack.name;
  T('me-detail').textContent = `user #${ack.id} · device ${ack.device}`;
  S.friends = new Map(ack.friends.map((f) => [f.id, f]));
  ack.friends.forEach((f) => learn(f.id, f.name));
  S.incoming = ack.requests;
  S.groups = new Map(ack.groups.map((g) => [g.id, g]));
  ack.groups.forEach((g) => g.users.forEach((u) => learn(u.id, u.name)));
  // Groups left, kicked from or dissolved while away are gone from the list.
  for (const id of [...S.convs.keys()]) {
    if (id[0] === 'g' && !S.groups.has(Number(id.slice(1)))) forgetConv(id);
  }
  mergeConversations(ack.conversations);
  for (const m of ack.offlinemsg) addMessage(m);
  if (first) loadOutbox();
  refreshFriends();
  // Fill what was missed while away in the conversations already loaded.
  for (const c of S.convs.values()) if (c.loaded) catchUp(c);
  loadPreviews();
  resend();
  renderAll();
  // A reload (or a new login) opens the chat that was open.
  const open = first && store.get(`open.${ack.id}`);
  if (open && S.convs.has(open)) openConv(open);
}

// The conversations at the top of the list whose last message the page fetches for its preview at
// login (CONVERSATIONS carries positions, not texts); the rest get theirs when opened or written to.
const PREVIEWS = 30;

/** Fetches the last message of each of the first [`PREVIEWS`] conversations that has none loaded. */
async function loadPreviews() {
  const bare = S.order.slice(0, PREVIEWS).map((id) => S.convs.get(id))
    .filter((c) => c && c.last > 0 && c.msgs.size === 0);
  await Promise.all(bare.map(async (c) => {
    try {
      const ack = await conn.request({ msgid: 19, conv: c.conv, limit: 1 });
      for (const m of ack.messages) addMessage(m);
    } catch { /* no preview: the conversation still opens and loads its history */ }
  }));
  if (bare.length) renderConvList();
}

function resetState() {
  S.convs = new Map();
  S.order = [];
  S.current = null;
  S.view = 'list';
  S.typing = new Map();
  S.names = new Map();
  S.found = null;
  S.outbox = [];
}

function logout() {
  conn.request({ msgid: 3 }).catch(() => {});
  rememberOpen(null);
  store.set('token', null);
  resetState();
  T('toasts').replaceChildren();
  showLogin('Logged out.', true);
}

// ---------------------------------------------------------------------------------------------------
// Conversations and messages

function mergeConversations(list) {
  const seen = [];
  for (const e of list) {
    const c = conv(e.conv, e.name);
    c.name = e.name;
    c.last = Math.max(c.last, e.last);
    c.read = Math.max(c.read, e.read);
    if (e.peerread !== undefined) c.peerRead = Math.max(c.peerRead, e.peerread);
    seen.push(e.conv);
  }
  S.order = [...seen, ...S.order.filter((id) => !seen.includes(id))];
}

async function refreshConversations() {
  try {
    const ack = await conn.request({ msgid: 17 });
    mergeConversations(ack.conversations);
    renderConvList();
  } catch (err) {
    console.warn('CONVERSATIONS', err);
  }
}

/** A chat frame (6 or 10, v2) from anywhere: live, offline, carbon or history. */
function addMessage(m, { live = false } = {}) {
  if (typeof m.conv !== 'string' || typeof m.pos !== 'number') return;
  learn(m.id, m.name);
  const c = conv(m.conv, m.msgid === 10 ? undefined : (m.id === S.me.id ? undefined : m.name));
  const known = c.msgs.has(m.pos);
  c.msgs.set(m.pos, m);
  if (m.cid) {
    const i = S.outbox.findIndex((o) => o.cid === m.cid);
    if (i >= 0) { S.outbox.splice(i, 1); saveOutbox(); }
  }
  c.last = Math.max(c.last, m.pos);
  if (m.id === S.me.id) c.read = Math.max(c.read, m.pos);
  if (live && !known) {
    toFront(m.conv);
    const t = S.typing.get(m.conv);
    if (t && t.id === m.id) S.typing.delete(m.conv);
  }
  return c;
}

async function loadLatest(c) {
  if (c.loading) return;
  c.loading = true;
  try {
    const ack = await conn.request({ msgid: 19, conv: c.conv, limit: 30 });
    for (const m of ack.messages) addMessage(m);
    c.more = ack.more;
    c.loaded = true;
  } catch (err) {
    toast(`Could not load the history: ${explain(err)}`, 'error');
  } finally {
    c.loading = false;
  }
  if (S.current === c.conv) {
    renderChat({ stick: true });
    fillScreen(c);
  }
}

async function loadOlder(c) {
  if (c.loading || !c.more || !c.loaded) return;
  const oldest = Math.min(...c.msgs.keys());
  if (!Number.isFinite(oldest) || oldest <= 1) { c.more = false; return; }
  c.loading = true;
  const box = T('messages');
  const before = box.scrollHeight - box.scrollTop;
  try {
    const ack = await conn.request({ msgid: 19, conv: c.conv, before: oldest, limit: 30 });
    for (const m of ack.messages) addMessage(m);
    c.more = ack.more;
  } catch (err) {
    toast(`Could not load older messages: ${explain(err)}`, 'error');
  } finally {
    c.loading = false;
  }
  if (S.current === c.conv) {
    renderChat();
    box.scrollTop = box.scrollHeight - before; // keep what was on screen where it was
    fillScreen(c);
  }
}

/** Loads older messages while the list does not fill its box (nothing to scroll yet). */
function fillScreen(c) {
  const box = T('messages');
  if (c.more && box.scrollHeight <= box.clientHeight + 8) loadOlder(c);
}

async function catchUp(c) {
  const newest = c.msgs.size ? Math.max(...c.msgs.keys()) : 0;
  try {
    const ack = await conn.request({ msgid: 19, conv: c.conv, after: newest, limit: 200 });
    if (ack.more) {
      c.msgs.clear();
      c.loaded = false;
      c.more = true;
      if (S.current === c.conv) loadLatest(c);
      return;
    }
    for (const m of ack.messages) addMessage(m);
    if (S.current === c.conv) renderChat({ stick: true });
    renderConvList();
  } catch (err) {
    if (err instanceof Refused) {
      // Not a member any more, or the group is gone.
      forgetConv(c.conv);
      renderAll();
    }
  }
}

function forgetConv(id) {
  S.convs.delete(id);
  S.order = S.order.filter((c) => c !== id);
  if (S.current === id) { S.current = null; S.view = 'list'; rememberOpen(null); }
}

/** Remembers `id` as the chat this user has open (`null`: none), so that a reload opens it again. */
function rememberOpen(id) {
  if (S.me) store.set(`open.${S.me.id}`, id);
}

function openConv(id) {
  const c = conv(id);
  S.current = id;
  rememberOpen(id);
  S.view = 'chat';
  S.tab = 'chats';
  S.confirm = null;
  T('composer').value = '';
  renderComposer();
  renderAll();
  if (!c.loaded) loadLatest(c);
  else renderChat({ stick: true });
  T('composer').focus({ preventScroll: true });
}

/** Sends READ for what the open conversation shows, if that moves the read position. */
function markRead() {
  const c = S.current && S.convs.get(S.current);
  if (!c || !c.loaded || !S.me?.online || !conn.open || document.visibilityState !== 'visible') return;
  if (window.matchMedia('(max-width: 720px)').matches && S.view === 'list') return;
  const top = c.msgs.size ? Math.max(...c.msgs.keys()) : 0;
  if (top <= c.read || top <= c.readSent) return;
  c.readSent = top;
  conn.request({ msgid: 21, conv: c.conv, pos: top })
    .then((ack) => { c.read = Math.max(c.read, ack.read); renderConvList(); })
    .catch(() => { c.readSent = 0; });
}
document.addEventListener('visibilitychange', markRead);

// ---------------------------------------------------------------------------------------------------
// Sending: the outbox keeps every message until its ack; it is resent with the same cid after a
// reconnect (and after a reload: it is kept in localStorage), so nothing is lost or duplicated.

function loadOutbox() {
  try {
    const saved = JSON.parse(store.get(`outbox.${S.me.id}`) ?? '[]');
    S.outbox = Array.isArray(saved) ? saved.map((m) => ({ ...m, state: 'failed' })) : [];
  } catch {
    S.outbox = [];
  }
}

function saveOutbox() {
  if (!S.me) return;
  const keep = S.outbox.filter((m) => m.state !== 'refused').map(({ cid, conv: c, msg }) => ({ cid, conv: c, msg }));
  store.set(`outbox.${S.me.id}`, keep.length ? JSON.stringify(keep) : null);
}

// The most characters one message may have: the server's default `limits.max_text_chars` (a server set
// lower refuses longer ones, and the message shows as refused).
const MAX_TEXT = 16384;

/** How many characters `text` has as the server counts them (code points, not UTF-16 units). */
function chars(text) {
  return [...text].length;
}

/** Shows the composer's length once it nears the limit, and how far over it is (a textarea `maxlength`
 * would cut a long paste without a word; this says so and keeps the text), and offers Send only when
 * there is something to send. */
function renderComposer() {
  const text = T('composer').value;
  T('send').disabled = !text.trim();
  const n = chars(text);
  const count = T('composer-count');
  count.hidden = n <= MAX_TEXT * 0.9;
  count.textContent = `${n.toLocaleString()} / ${MAX_TEXT.toLocaleString()}`;
  count.classList.toggle('over', n > MAX_TEXT);
}

function sendText(text) {
  const c = S.convs.get(S.current);
  if (!c || !text.trim()) return;
  const m = { cid: `${randomHex(12)}`, conv: c.conv, msg: text, state: 'sending', tries: 0 };
  S.outbox.push(m);
  saveOutbox();
  toFront(c.conv);
  renderChat({ stick: true });
  renderConvList();
  transmit(m);
}

let retryTimer = null;
async function transmit(m) {
  // Only once this connection is logged in (its login ack came): before that it would be 103.
  if (!conn.open || !S.me?.online) { m.state = 'failed'; renderChat(); return; }
  m.state = 'sending';
  m.tries += 1;
  const n = Number(m.conv.slice(1));
  const frame = m.conv[0] === 'g'
    ? { msgid: 10, groupid: n, msg: m.msg, cid: m.cid }
    : { msgid: 6, toid: n, msg: m.msg, cid: m.cid };
  try {
    const ack = await conn.request(frame);
    const i = S.outbox.indexOf(m);
    if (i >= 0) S.outbox.splice(i, 1);
    saveOutbox();
    const c = conv(ack.conv);
    if (!c.msgs.has(ack.pos)) {
      c.msgs.set(ack.pos, {
        msgid: frame.msgid, id: S.me.id, name: S.me.name, msg: m.msg, cid: m.cid,
        conv: ack.conv, pos: ack.pos, ts: ack.ts, ...(n && m.conv[0] === 'g' ? { groupid: n } : { toid: n }),
      });
    }
    c.last = Math.max(c.last, ack.pos);
    c.read = Math.max(c.read, ack.pos);
  } catch (err) {
    if (err instanceof Refused && ![103, 107, 109].includes(err.errno)) {
      m.state = 'refused';
      m.error = err.message;
      saveOutbox();
    } else {
      m.state = 'failed';
      clearTimeout(retryTimer);
      retryTimer = setTimeout(resend, Math.min(10000, 1000 * m.tries));
    }
  }
  renderChat({ stick: true });
  renderConvList();
}

/** Resends every unacknowledged message, in order, with its cid. */
function resend() {
  for (const m of S.outbox) if (m.state === 'failed') transmit(m);
}

// ---------------------------------------------------------------------------------------------------
// Pushes

function handlePush(f) {
  if (!S.me) return;
  switch (f.msgid) {
    case 6:
    case 10: {
      const c = addMessage(f, { live: true });
      if (c && S.current === c.conv) { renderChat({ stick: true }); markRead(); }
      renderConvList();
      break;
    }
    case 23: { // RECEIPT
      const c = conv(f.conv);
      if (f.id === S.me.id) c.read = Math.max(c.read, f.read);
      else c.peerRead = Math.max(c.peerRead, f.read);
      renderConvList();
      if (S.current === f.conv) renderChat();
      break;
    }
    case 26: friendEvent(f); break;
    case 49: groupEvent(f); break;
    case 50: { // PRESENCE
      const fr = S.friends.get(f.id);
      if (fr) fr.state = f.state;
      for (const g of S.groups.values()) for (const u of g.users) if (u.id === f.id) u.state = f.state;
      renderAll();
      break;
    }
    case 51: { // TYPING
      S.typing.set(f.conv, { id: f.id, until: Date.now() + 3500 });
      renderTyping();
      setTimeout(renderTyping, 3600);
      break;
    }
    case 15:
      console.warn('server error', f);
      break;
    default:
      break;
  }
}

function friendEvent(f) {
  learn(f.id, f.name);
  const text = {
    request: `${f.name} asks to be your friend`,
    accepted: `${f.name} accepted your friend request`,
    declined: `${f.name} declined your friend request`,
    removed: `${f.name} removed you as a friend`,
  }[f.event];
  if (text) toast(text);
  refreshFriends();
}

async function groupEvent(f) {
  // A joiner we know nothing of yet: learn their name first, from the member list.
  if (f.event === 'joined' && !S.names.has(f.id) && S.groups.has(f.groupid)) await refreshGroup(f.groupid);
  const g = S.groups.get(f.groupid);
  const gname = g?.groupname ?? `group ${f.groupid}`;
  const who = nameOf(f.id);
  const by = nameOf(f.by);
  const me = f.id === S.me.id;
  let text;
  switch (f.event) {
    case 'joined': text = me ? `You joined ${gname}` : `${who} joined ${gname}`; break;
    case 'left': text = me ? `You left ${gname}` : `${who} left ${gname}`; break;
    case 'kicked': text = me ? `${by} removed you from ${gname}` : `${by} removed ${who} from ${gname}`; break;
    case 'role': text = `${by} made ${me ? 'you' : who} ${f.role === 'creator' ? 'the creator' : f.role === 'admin' ? 'an admin' : 'a normal member'} of ${gname}`; break;
    case 'updated': text = `${by} renamed the group to ${f.groupname}`; break;
    case 'dissolved': text = `${by} dissolved ${gname}`; break;
    default: return;
  }
  toast(text, f.event === 'kicked' && me ? 'warn' : 'info');
  const id = `g${f.groupid}`;
  const c = S.convs.get(id);
  if (c) c.notes.push({ after: c.last, text });
  if ((me && (f.event === 'left' || f.event === 'kicked')) || f.event === 'dissolved') {
    S.groups.delete(f.groupid);
    if (c) {
      c.gone = f.event === 'dissolved' ? 'This group was dissolved.' : 'You are no longer a member of this group.';
    }
    if (S.current !== id) forgetConv(id);
  } else if (g) {
    if (f.event === 'updated') {
      g.groupname = f.groupname;
      g.groupdesc = f.groupdesc;
      if (c) c.name = f.groupname;
    }
    refreshGroup(f.groupid);
  } else if (me && f.event === 'joined') {
    refreshGroup(f.groupid);
    refreshConversations();
  }
  renderAll();
}

function renderTyping() {
  const line = T('typing');
  const t = S.current && S.typing.get(S.current);
  if (t && t.until > Date.now()) {
    line.textContent = `${nameOf(t.id)} is typing…`;
  } else {
    line.textContent = '';
  }
}

// ---------------------------------------------------------------------------------------------------
// Friends and groups: requests

async function refreshFriends() {
  try {
    const ack = await conn.request({ msgid: 33 });
    S.friends = new Map(ack.friends.map((f) => [f.id, f]));
    ack.friends.forEach((f) => learn(f.id, f.name));
    S.incoming = ack.incoming;
    S.outgoing = ack.outgoing;
    S.blocked = ack.blocked;
    [...ack.incoming, ...ack.outgoing, ...ack.blocked].forEach((u) => learn(u.id, u.name));
    renderAll();
  } catch (err) {
    console.warn('FRIENDS', err);
  }
}

async function refreshGroup(id) {
  try {
    const ack = await conn.request({ msgid: 47, groupid: id });
    S.groups.set(id, ack.group);
    ack.group.users.forEach((u) => learn(u.id, u.name));
    const c = conv(`g${id}`, ack.group.groupname);
    c.name = ack.group.groupname;
    delete c.gone; // a member again (joined anew)
    renderAll();
  } catch (err) {
    if (err instanceof Refused) {
      S.groups.delete(id);
      renderAll();
    }
  }
}

/** Runs a request from a button; shows a refusal as a toast. Resolves with the ack or null. */
async function act(frame, after) {
  try {
    const ack = await conn.request(frame);
    if (after) await after(ack);
    return ack;
  } catch (err) {
    toast(explain(err), 'error');
    return null;
  }
}

// ---------------------------------------------------------------------------------------------------
// Rendering

function renderAll() {
  if (!S.me) return;
  document.body.dataset.view = S.view;
  for (const b of document.querySelectorAll('[data-tab]')) {
    b.setAttribute('aria-selected', String(b.dataset.tab === S.tab));
  }
  for (const p of document.querySelectorAll('[data-panel]')) p.hidden = p.dataset.panel !== S.tab;
  const badge = T('requests-badge');
  badge.hidden = S.incoming.length === 0;
  badge.textContent = String(S.incoming.length);
  renderConvList();
  renderFriends();
  renderGroups();
  renderChat();
  renderMembers();
}

function presenceDot(id) {
  const f = S.friends.get(id);
  if (!f) return null;
  return el('span', { class: `dot ${f.state}`, 'data-test': 'presence', 'data-state': f.state, title: f.state });
}

function renderConvList() {
  if (!S.me) return;
  const list = T('conv-list');
  const items = S.order.map((id) => S.convs.get(id)).filter(Boolean).map((c) => {
    const n = Number(c.conv.slice(1));
    const lastMsg = c.msgs.size ? c.msgs.get(Math.max(...c.msgs.keys())) : null;
    const u = unread(c);
    return el('li', {
      'data-test': 'conv', 'data-conv': c.conv, class: c.conv === S.current ? 'item current' : 'item',
    },
    el('button', { type: 'button', class: 'row', onclick: () => openConv(c.conv) },
      c.conv[0] === 'u' ? (presenceDot(n) ?? el('span', { class: 'dot none' })) : el('span', { class: 'dot group', 'aria-hidden': 'true' }, '#'),
      el('span', { class: 'grow' },
        el('span', { class: 'name', 'data-test': 'conv-name' }, c.name),
        el('span', { class: 'preview', 'data-test': 'conv-preview' }, lastMsg ? `${lastMsg.id === S.me.id ? 'You: ' : (c.conv[0] === 'g' ? `${lastMsg.name}: ` : '')}${lastMsg.msg}` : '')),
      u > 0 ? el('span', { class: 'badge', 'data-test': 'unread' }, String(u)) : null));
  });
  list.replaceChildren(...items);
  T('conv-empty').hidden = items.length > 0;
  const total = [...S.convs.values()].reduce((n, c) => n + unread(c), 0);
  document.title = total > 0 ? `(${total}) clusterchat` : 'clusterchat';
  const badge = T('unread-badge');
  badge.hidden = total === 0 || S.tab === 'chats';
  badge.textContent = String(total);
}

function renderFriends() {
  const userRow = (u, testName, ...buttons) => el('li', { 'data-test': testName, 'data-id': u.id, class: 'item' },
    el('div', { class: 'row' }, presenceDot(u.id), el('span', { class: 'grow name' }, u.name, ' ', el('small', {}, `#${u.id}`)), ...buttons),
    u.text ? el('p', { class: 'note' }, u.text) : null);
  const btn = (label, test, frame, cls = 'small') => el('button', {
    type: 'button', class: cls, 'data-test': test, onclick: () => act(frame, refreshFriends),
  }, label);

  T('incoming-list').replaceChildren(...S.incoming.map((u) => userRow(u, 'incoming',
    btn('Accept', 'accept', { msgid: 27, friendid: u.id, accept: true }),
    btn('Decline', 'decline', { msgid: 27, friendid: u.id, accept: false }),
    btn('Block', 'block', { msgid: 31, id: u.id, block: true }, 'small danger'))));
  T('outgoing-list').replaceChildren(...S.outgoing.map((u) => userRow(u, 'outgoing',
    btn('Withdraw', 'withdraw', { msgid: 29, friendid: u.id }))));
  T('friend-list').replaceChildren(...[...S.friends.values()].map((u) => userRow(u, 'friend',
    el('button', { type: 'button', class: 'small', 'data-test': 'chat-with', onclick: () => openConv(`u${u.id}`) }, 'Chat'),
    btn('Remove', 'remove', { msgid: 29, friendid: u.id }),
    btn('Block', 'block', { msgid: 31, id: u.id, block: true }, 'small danger'))));
  T('blocked-list').replaceChildren(...S.blocked.map((u) => userRow(u, 'blocked',
    btn('Unblock', 'unblock', { msgid: 31, id: u.id, block: false }))));

  const box = T('find-result');
  const f = S.found;
  if (!f) { box.replaceChildren(); return; }
  if (f.error) { box.replaceChildren(el('p', { class: 'error' }, f.error)); return; }
  const isFriend = S.friends.has(f.id);
  const isMe = f.id === S.me.id;
  const text = el('input', { placeholder: 'A word with your request (optional)', maxlength: 200, 'data-test': 'request-text' });
  box.replaceChildren(el('div', { class: 'item', 'data-test': 'found', 'data-id': f.id },
    el('div', { class: 'row' }, el('span', { class: 'grow name' }, f.name, ' ', el('small', {}, `#${f.id}`)),
      el('button', { type: 'button', class: 'small', 'data-test': 'found-chat', onclick: () => openConv(`u${f.id}`) }, 'Chat')),
    isMe || isFriend ? el('p', { class: 'note' }, isMe ? 'That is you.' : 'Already your friend.') : el('div', { class: 'row' }, text,
      el('button', {
        type: 'button', class: 'small', 'data-test': 'request-send',
        onclick: () => act({ msgid: 24, friendid: f.id, text: text.value }, (ack) => {
          toast(ack.state === 'friends' ? `You and ${f.name} are friends` : `Friend request sent to ${f.name}`);
          S.found = null;
          return refreshFriends();
        }),
      }, 'Ask to be friends'))));
}

function renderGroups() {
  T('group-list').replaceChildren(...[...S.groups.values()].map((g) => {
    const mine = g.users.find((u) => u.id === S.me.id);
    return el('li', { 'data-test': 'group', 'data-id': g.id, class: 'item' },
      el('button', { type: 'button', class: 'row', onclick: () => openConv(`g${g.id}`) },
        el('span', { class: 'dot group', 'aria-hidden': 'true' }, '#'),
        el('span', { class: 'grow' }, el('span', { class: 'name' }, g.groupname, ' ', el('small', {}, `#${g.id}`)),
          el('span', { class: 'preview' }, `${g.users.length} member${g.users.length === 1 ? '' : 's'}${mine ? ` · you: ${mine.role}` : ''}${g.groupdesc ? ` · ${g.groupdesc}` : ''}`))));
  }));
}

function statusOf(c, m) {
  if (m.id !== S.me.id) return null;
  if (c.conv[0] === 'u' && Number(c.conv.slice(1)) !== S.me.id && m.pos <= c.peerRead) return 'read';
  return 'sent';
}

const STATUS_TEXT = {
  sending: 'sending…', sent: 'sent', read: 'read', failed: 'not sent, retrying', refused: 'failed',
};

function renderChat({ stick = false } = {}) {
  const c = S.current && S.convs.get(S.current);
  const box = T('messages');
  T('no-chat').hidden = Boolean(c);
  T('chat-head').hidden = !c;
  box.hidden = !c;
  T('composer-form').hidden = !c || Boolean(c.gone);
  T('members-toggle').hidden = !c || c.conv[0] !== 'g' || Boolean(c.gone);
  if (!c) {
    box.replaceChildren();
    T('chat-title').textContent = '';
    T('chat-sub').textContent = '';
    renderTyping();
    return;
  }
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const n = Number(c.conv.slice(1));
  T('chat-title').textContent = c.name;
  if (c.conv[0] === 'g') {
    const g = S.groups.get(n);
    T('chat-sub').textContent = c.gone ?? (g ? `${g.users.length} members${g.groupdesc ? ` · ${g.groupdesc}` : ''}` : '');
  } else {
    const f = S.friends.get(n);
    T('chat-sub').textContent = n === S.me.id ? 'notes to yourself' : f ? f.state : 'not a friend';
  }
  renderTyping();

  const positions = [...c.msgs.keys()].sort((a, b) => a - b);
  const items = [];
  if (c.loaded) {
    items.push(el('li', { class: 'system', 'data-test': 'history-top' },
      c.loading ? 'Loading…' : c.more ? 'Scroll up for older messages' : 'The beginning of the conversation'));
  }
  const notes = [...c.notes];
  const pushNotes = (upto) => {
    while (notes.length && notes[0].after <= upto) {
      items.push(el('li', { class: 'system', 'data-test': 'event' }, notes.shift().text));
    }
  };
  for (const pos of positions) {
    pushNotes(pos - 1);
    const m = c.msgs.get(pos);
    const mine = m.id === S.me.id;
    const status = statusOf(c, m);
    items.push(el('li', {
      class: mine ? 'msg mine' : 'msg', 'data-test': 'msg', 'data-pos': pos, 'data-cid': m.cid, 'data-from': m.id,
    },
    c.conv[0] === 'g' && !mine ? el('span', { class: 'from', 'data-test': 'msg-from' }, m.name) : null,
    el('span', { class: 'text', 'data-test': 'msg-text' }, m.msg),
    el('span', { class: 'meta' }, timeOf(m.ts),
      status ? el('span', { class: `status ${status}`, 'data-test': 'msg-status', 'data-status': status }, STATUS_TEXT[status]) : null)));
  }
  pushNotes(Infinity);
  for (const m of S.outbox.filter((o) => o.conv === c.conv)) {
    items.push(el('li', { class: 'msg mine pending', 'data-test': 'msg', 'data-cid': m.cid },
      el('span', { class: 'text', 'data-test': 'msg-text' }, m.msg),
      el('span', { class: 'meta' },
        el('span', { class: `status ${m.state}`, 'data-test': 'msg-status', 'data-status': m.state, title: m.error ?? '' },
          m.state === 'refused' ? `failed: ${m.error}` : STATUS_TEXT[m.state]),
        m.state === 'refused' ? el('button', {
          type: 'button', class: 'small', 'data-test': 'discard',
          onclick: () => { S.outbox.splice(S.outbox.indexOf(m), 1); saveOutbox(); renderChat(); },
        }, 'Discard') : null)));
  }
  if (c.gone) items.push(el('li', { class: 'system', 'data-test': 'gone' }, c.gone));
  box.replaceChildren(...items);
  if (stick || atBottom) box.scrollTop = box.scrollHeight;
  markRead();
}

function renderMembers() {
  const panel = T('members');
  const c = S.current && S.convs.get(S.current);
  const g = c && c.conv[0] === 'g' ? S.groups.get(Number(c.conv.slice(1))) : null;
  panel.hidden = !g || S.view !== 'members' && !S.membersOpen;
  if (!g) return;
  const myRole = g.users.find((u) => u.id === S.me.id)?.role;
  T('members-title').textContent = g.groupname;
  T('members-sub').textContent = `Group #${g.id}${g.groupdesc ? ` · ${g.groupdesc}` : ''} · you are ${myRole === 'admin' ? 'an admin' : myRole === 'creator' ? 'the creator' : 'a member'}`;

  const confirmable = (label, test, key, frame, sure) => {
    const armed = S.confirm === key;
    return el('button', {
      type: 'button', class: armed ? 'small danger armed' : 'small', 'data-test': test,
      onclick: () => {
        if (sure && !armed) { S.confirm = key; renderMembers(); return; }
        S.confirm = null;
        // Refused too: the group changed meanwhile (another admin was quicker), so show it as it is.
        act(frame).then(() => refreshGroup(g.id));
      },
    }, armed ? `${label}: sure?` : label);
  };

  T('member-list').replaceChildren(...g.users.map((u) => {
    const buttons = [];
    if (u.id !== S.me.id) {
      const canKick = myRole === 'creator' || (myRole === 'admin' && u.role === 'normal');
      if (canKick) buttons.push(confirmable('Remove', 'kick', `kick${u.id}`, { msgid: 39, groupid: g.id, id: u.id }, false));
      if (myRole === 'creator') {
        if (u.role === 'normal') buttons.push(confirmable('Make admin', 'make-admin', `a${u.id}`, { msgid: 41, groupid: g.id, id: u.id, role: 'admin' }, false));
        if (u.role === 'admin') buttons.push(confirmable('Make normal', 'make-normal', `n${u.id}`, { msgid: 41, groupid: g.id, id: u.id, role: 'normal' }, false));
        buttons.push(confirmable('Hand over', 'hand-over', `h${u.id}`, { msgid: 41, groupid: g.id, id: u.id, role: 'creator' }, true));
      }
    }
    return el('li', { class: 'item', 'data-test': 'member', 'data-id': u.id, 'data-role': u.role },
      el('div', { class: 'row' },
        el('span', { class: `dot ${u.state}`, 'data-test': 'presence', 'data-state': u.state, title: u.state }),
        el('span', { class: 'grow name' }, u.id === S.me.id ? `${u.name} (you)` : u.name),
        el('span', { class: `role ${u.role}`, 'data-test': 'role' }, u.role)),
      buttons.length ? el('div', { class: 'row buttons' }, ...buttons) : null);
  }));

  // Those kicked and not let back; GROUP_INFO lists them to the creator and admins only.
  const banned = g.banned ?? [];
  T('banned').hidden = banned.length === 0;
  T('banned-list').replaceChildren(...banned.map((u) => el('li', { class: 'item', 'data-test': 'banned-user', 'data-id': u.id },
    el('div', { class: 'row' }, el('span', { class: 'grow name' }, u.name)),
    el('div', { class: 'row buttons' }, confirmable('Let back', 'unban', `unban${u.id}`, { msgid: 54, groupid: g.id, id: u.id }, false)))));

  const rename = T('rename-form');
  rename.hidden = !(myRole === 'creator' || myRole === 'admin');
  if (document.activeElement?.form !== rename) {
    rename.elements.name.value = g.groupname;
    rename.elements.desc.value = g.groupdesc;
  }
  T('dissolve').hidden = myRole !== 'creator';
  const dissolve = T('dissolve');
  dissolve.textContent = S.confirm === 'dissolve' ? 'Dissolve: sure?' : 'Dissolve group';
  T('leave').textContent = S.confirm === 'leave' ? 'Leave: sure?' : 'Leave group';
}

// ---------------------------------------------------------------------------------------------------
// Wiring the static page

function wire() {
  for (const b of document.querySelectorAll('#login [data-form]')) {
    b.addEventListener('click', () => {
      showForm(b.dataset.form);
      loginStatus('', true);
    });
  }
  T('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = e.target.elements;
    // Digits only: a user id (as the original client logs in); anything else: the registered name.
    const who = f.id.value.trim();
    const account = /^[0-9]+$/.test(who) ? { id: Number(who) } : { name: who };
    passwordLogin({ account, password: f.password.value, device: f.device.value.trim() || defaultDevice() });
  });
  T('register-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = e.target.elements;
    const name = f.name.value;
    const password = f.password.value;
    if (!conn.open) { loginStatus('The server is not reachable yet.'); return; }
    loginStatus('Registering…', true);
    try {
      const ack = await conn.request({ msgid: 4, name, password });
      T('login-form').elements.id.value = name;
      loginStatus(`Registered: your user id is ${ack.id}.`, true);
      passwordLogin({ account: { id: ack.id }, password, device: T('login-form').elements.device.value.trim() || defaultDevice() });
    } catch (err) {
      loginStatus(explain(err));
    }
  });
  T('banner-retry').addEventListener('click', () => conn.connect());
  T('logout').addEventListener('click', logout);

  for (const b of document.querySelectorAll('[data-tab]')) {
    b.addEventListener('click', () => { S.tab = b.dataset.tab; S.view = 'list'; renderAll(); });
  }
  T('back').addEventListener('click', () => {
    S.view = 'list';
    S.membersOpen = false;
    rememberOpen(null);
    renderAll();
  });
  T('members-back').addEventListener('click', () => { S.view = 'chat'; S.membersOpen = false; renderAll(); });
  T('members-toggle').addEventListener('click', () => {
    const open = !(S.membersOpen || S.view === 'members');
    S.membersOpen = open;
    S.view = open ? 'members' : 'chat';
    S.confirm = null;
    renderAll();
    if (open) refreshGroup(Number(S.current.slice(1)));
  });

  const composer = T('composer');
  let lastTyping = 0;
  composer.addEventListener('input', () => {
    renderComposer();
    if (!S.current || !composer.value) return;
    const now = Date.now();
    if (now - lastTyping > 2000) {
      lastTyping = now;
      conn.send({ msgid: 51, conv: S.current });
    }
  });
  composer.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      T('composer-form').requestSubmit();
    }
  });
  T('composer-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = composer.value;
    if (!text.trim()) return;
    if (chars(text) > MAX_TEXT) {
      toast(`This message has ${chars(text).toLocaleString()} characters; one message holds at most ${MAX_TEXT.toLocaleString()}. Shorten it or send it in parts.`, 'error');
      return;
    }
    composer.value = '';
    renderComposer();
    lastTyping = 0;
    sendText(text);
  });
  T('messages').addEventListener('scroll', () => {
    const c = S.current && S.convs.get(S.current);
    if (c && T('messages').scrollTop < 60) loadOlder(c);
  });

  T('find-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = e.target.elements.name.value;
    try {
      const ack = await conn.request({ msgid: 35, name });
      learn(ack.id, ack.name);
      S.found = { id: ack.id, name: ack.name };
    } catch (err) {
      S.found = { error: err instanceof Refused && err.errno === 104 ? `Nobody is called "${name}".` : explain(err) };
    }
    renderFriends();
  });
  T('create-group-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = e.target.elements;
    act({ msgid: 8, groupname: f.name.value, groupdesc: f.desc.value }, async (ack) => {
      f.name.value = '';
      f.desc.value = '';
      toast(`Created ${ack.groupname} (group #${ack.groupid})`);
      await refreshGroup(ack.groupid);
      openConv(`g${ack.groupid}`);
    });
  });
  T('join-group-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = e.target.elements;
    const id = Number(f.id.value);
    act({ msgid: 9, groupid: id }, async () => {
      f.id.value = '';
      await refreshGroup(id);
      toast(`You joined ${S.groups.get(id)?.groupname ?? `group #${id}`}`);
      await refreshConversations();
      openConv(`g${id}`);
    });
  });
  T('rename-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const f = e.target.elements;
    const id = Number(S.current.slice(1));
    act({ msgid: 43, groupid: id, groupname: f.name.value, groupdesc: f.desc.value }, () => {
      f.name.blur();
      f.desc.blur();
      return refreshGroup(id);
    });
  });
  T('leave').addEventListener('click', () => groupExit('leave', 37));
  T('dissolve').addEventListener('click', () => groupExit('dissolve', 45));
}

function groupExit(key, msgid) {
  if (S.confirm !== key) { S.confirm = key; renderMembers(); return; }
  S.confirm = null;
  const id = Number(S.current.slice(1));
  act({ msgid, groupid: id }, () => {
    S.groups.delete(id);
    forgetConv(`g${id}`);
    S.membersOpen = false;
    toast(msgid === 37 ? 'You left the group' : 'The group is dissolved');
    renderAll();
  });
}

wire();
document.body.dataset.screen = 'connecting';
conn.connect();
