// The API client: tokens, requests with one refresh on 401, the WebSocket and Server-Sent Events.
// The access token lives only in this module's memory; the refresh token in sessionStorage (this tab).

export const V1 = '/api/v1';
const REFRESH_KEY = 'orchestrator.console.refresh';

let accessToken = null;
let refreshing = null;
export const session = { user: null, onSignedOut: () => {} };

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = error?.code || 'HTTP_ERROR';
    this.details = Array.isArray(error?.details) ? error.details : [];
    this.correlationId = error?.correlation_id || null;
  }
}

function storedRefresh() {
  try { return sessionStorage.getItem(REFRESH_KEY); } catch { return null; }
}

function keep(tokens) {
  accessToken = tokens.access_token;
  try { sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token); } catch { /* private mode: memory only */ }
}

function forget() {
  accessToken = null;
  session.user = null;
  try { sessionStorage.removeItem(REFRESH_KEY); } catch { /* nothing kept */ }
}

export function token() {
  return accessToken;
}

async function send(path, { method = 'GET', body, query, signal, headers = {} } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== '') params.set(key, value);
    }
    if ([...params].length) url += `?${params}`;
  }
  const init = { method, signal, headers: { Accept: 'application/json', ...headers }, credentials: 'omit' };
  if (accessToken) init.headers.Authorization = `Bearer ${accessToken}`;
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return fetch(url, init);
}

async function failure(response) {
  let error = null;
  try { error = (await response.json()).error; } catch { /* not the envelope */ }
  return new ApiError(response.status, error || { message: `${response.status} ${response.statusText}` });
}

/** Rotate the refresh token once for everyone waiting (a used refresh token is spent). */
export function refresh() {
  if (!refreshing) {
    refreshing = (async () => {
      const refreshToken = storedRefresh();
      if (!refreshToken) return false;
      const response = await send(`${V1}/auth/refresh`, { method: 'POST', body: { refresh_token: refreshToken } });
      if (!response.ok) { forget(); return false; }
      keep(await response.json());
      return true;
    })().finally(() => { refreshing = null; });
  }
  return refreshing;
}

/** A request to the API: JSON in and out; a 401 refreshes the access token once and retries. */
export async function api(path, options = {}) {
  let response = await send(path, options);
  if (response.status === 401 && !options.noRefresh && storedRefresh()) {
    if (await refresh()) response = await send(path, options);
  }
  if (response.status === 401 && !options.noRefresh) {
    forget();
    session.onSignedOut();
  }
  if (!response.ok) throw await failure(response);
  if (options.raw) return response;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

export async function signIn(email, password) {
  const tokens = await api(`${V1}/auth/login`, { method: 'POST', body: { email, password }, noRefresh: true });
  keep(tokens);
  session.user = tokens.user;
  return tokens.user;
}

/** Resume this tab's session from its refresh token, if it has one. */
export async function resume() {
  if (!storedRefresh() || !(await refresh())) return null;
  session.user = await api(`${V1}/users/me`);
  return session.user;
}

export async function signOut() {
  try {
    if (accessToken) await api(`${V1}/auth/logout`, { method: 'POST', body: { refresh_token: storedRefresh() }, noRefresh: true });
  } finally {
    forget();
  }
}

/**
 * Server-Sent Events over fetch (EventSource cannot send the Authorization header). Calls
 * onEvent(name, data) for each event; reconnects with Last-Event-ID until `end` or the signal aborts.
 */
export async function stream(path, onEvent, signal) {
  let lastId = null;
  let delay = 500;
  while (!signal.aborted) {
    let ended = false;
    try {
      const response = await api(path, {
        raw: true, signal, headers: { Accept: 'text/event-stream', ...(lastId ? { 'Last-Event-ID': lastId } : {}) },
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, '\n');
        let cut;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let name = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            else if (line.startsWith('id:')) lastId = line.slice(3).trim();
          }
          if (!data.length) continue;
          let parsed;
          try { parsed = JSON.parse(data.join('\n')); } catch { parsed = data.join('\n'); }
          onEvent(name, parsed);
          if (name === 'end') ended = true;
        }
      }
      delay = 500;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status < 500) throw error;
    }
    if (ended) return;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

/**
 * The live connection: one WebSocket, authenticated with the first message, subscribed to the channels;
 * reconnects with backoff. listeners: onEvent(message), onState('connecting'|'live'|'off'), onReconnect().
 */
export class Live {
  constructor(channels, listeners) {
    this.channels = channels;
    this.listeners = listeners;
    this.stopped = false;
    this.delay = 1000;
    this.socket = null;
    this.everLive = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000);
    this.socket = null;
    this.listeners.onState('off');
  }

  connect() {
    if (this.stopped || !accessToken) return;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const socket = new WebSocket(`${scheme}//${location.host}${V1}/ws`);
    this.socket = socket;
    this.listeners.onState('connecting');
    let subscribed = 0;
    socket.addEventListener('open', () => socket.send(JSON.stringify({ type: 'auth', token: accessToken })));
    socket.addEventListener('message', (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (message.type === 'authenticated') {
        for (const channel of this.channels) socket.send(JSON.stringify({ type: 'subscribe', channel }));
      } else if (message.type === 'subscribed') {
        if (++subscribed === this.channels.length) {
          this.delay = 1000;
          this.listeners.onState('live');
          if (this.everLive) this.listeners.onReconnect();  // events may have been missed meanwhile
          this.everLive = true;
        }
      } else if (!['ping', 'pong', 'error', 'unsubscribed'].includes(message.type)) {
        this.listeners.onEvent(message);
      }
    });
    socket.addEventListener('close', async (event) => {
      if (this.socket !== socket || this.stopped) return;
      this.listeners.onState('off');
      if (event.code === 4401) await refresh().catch(() => false);
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 15000);
    });
  }
}
