// A real OAuth 2.0 authorization server for the OAuth broker's tests:
// `oidc-provider` (9.x) on a free loopback port, configured as strictly as the
// broker must cope with. The Rust suite starts it once per test process
// (`tests/suite/oauth_server.rs`); it exits when its stdin closes, so it dies
// with the test process. Every test registers its own client at runtime, so
// tests running in parallel in one process never see each other's grants or
// counters.
//
// Start-up:  node tests/tools/oidc/oauth-server.mjs
//   env:     OAUTH_ACCESS_TOKEN_TTL  default access-token lifetime in seconds (default 300);
//                                    a client may set its own at registration.
//   stdout:  exactly one JSON line once listening:
//            {"issuer":"http://127.0.0.1:PORT","port":PORT,
//             "authorization_endpoint":".../auth","token_endpoint":".../token",
//             "revocation_endpoint":".../token/revocation",
//             "introspection_endpoint":".../token/introspection",
//             "resource_endpoint":".../test/resource","scopes":[...]}
//   stderr:  oidc-provider's notices, and one line per failed grant (`grant.error: ...`,
//            the only place its error details appear: responses say "grant request is invalid").
//
// What the server enforces (oidc-provider configuration below):
//   - Authorization code flow with PKCE REQUIRED for every client, S256 only: an authorization
//     request without `code_challenge` is refused (redirect with error=invalid_request), and the
//     code exchange needs the matching `code_verifier` (else invalid_grant).
//   - Refresh tokens: issued on every code exchange for a client whose grant_types include
//     refresh_token (no need for `offline_access` or `prompt=consent`), and ROTATED ON EVERY USE
//     (`rotateRefreshToken: true`): a refresh answers a new refresh token and consumes the old
//     one. Presenting a consumed refresh token answers 400 invalid_grant AND revokes the whole
//     grant, so the token that replaced it (and every access token of the grant) dies too. Two
//     concurrent refreshes with one token: one succeeds, the other gets invalid_grant, grant gone.
//   - Revocation (RFC 7009) at revocation_endpoint; revoking a refresh or access token revokes
//     its grant. Introspection (RFC 7662) at introspection_endpoint.
//   - Client credentials grant for clients registered with it (no refresh token).
//   - Client authentication at the token, revocation and introspection endpoints:
//     client_secret_basic or client_secret_post, ONLY the one the client was registered with
//     (oidc-provider alone accepts either; this server answers 401 invalid_client with
//     "client authentication failed: registered X, got Y" to the other).
//   - Access tokens are opaque; lifetime OAUTH_ACCESS_TOKEN_TTL or the client's access_token_ttl.
//     Scopes offered: see SCOPES (unknown scopes are dropped from a request, not refused). An
//     authorization request must ask for at least one of them: with none granted, oidc-provider
//     ends the flow with error=access_denied after login.
//   - Responses carry `iss` (RFC 9207) next to code/state on the redirect.
//
// Login and consent (no browser needed; `oauth_server.rs` drives them with a cookie jar):
//   The authorization endpoint redirects to GET /interaction/{uid}, an HTML page with plain
//   forms: for login, a form POST /interaction/{uid}/login with text input `login` (any value is
//   accepted and becomes the subject) and `password` (ignored); for consent, a form POST
//   /interaction/{uid}/confirm (grants every requested scope). Each page also has a form POST
//   /interaction/{uid}/abort: the user refuses, and the server redirects to the client's
//   redirect_uri with error=access_denied&error_description=End-User+aborted+interaction.
//   The interaction cookie is scoped to /interaction/{uid} (cookie paths matter).
//
// Test-only routes (on /test/, a path oidc-provider does not use):
//   POST /test/clients  {"redirect_uris":[...], "grant_types":[...],
//                        "token_endpoint_auth_method":"client_secret_basic"|"client_secret_post",
//                        "scope":"read write", "access_token_ttl":S, "refresh_token_ttl":S}
//        -> 201 {"client_id":"client-<hex>","client_secret":"<hex>", ...the metadata given}
//        Every field is optional: grant_types defaults to ["authorization_code","refresh_token"],
//        the auth method to client_secret_basic, scope to every scope in SCOPES; response_types
//        is ["code"] when authorization_code is granted, else []. Registered metadata that
//        oidc-provider rejects answers 400 {"error":"invalid_client_metadata","error_description":...}.
//   GET  /test/token-requests?client_id=X
//        -> {"count":N,"success":a,"error":b,"aborted":c,"by_grant":{"authorization_code":n,...}}
//        Every POST to the token endpoint naming client X (HTTP Basic or client_id in the body),
//        counted when it arrives (count, by_grant keyed by the grant_type sent, "" when none) and
//        when answered: success = answered 200, error = any other answer, aborted = dropped by
//        the "drop" behaviour below (count = success + error + aborted once all are answered).
//        Client-authentication failures count as errors. Without client_id: totals over every client.
//   GET  /test/revocation-requests?client_id=X -> {"count":N,"success":a,"error":b}
//        The same for POSTs to the revocation endpoint (200 is success, whatever the token was).
//   POST /test/clients/{client_id}/behaviour  {"token_delay_ms":MS, "on_disconnect":"process"|"drop",
//                                              "fail_next":N, "fail_status":503}
//        -> {"ok":true}  Changes how the token endpoint treats this client's later requests:
//        - token_delay_ms: each request waits MS ms before oidc-provider sees it (0: no delay).
//          on_disconnect "process" (default): handled after the delay even if the caller has
//          hung up meanwhile (as a real server would: a refresh token is consumed though the
//          answer is lost); "drop": a request whose caller hung up during the delay is never
//          handled (counted as aborted), so the refresh token stays valid.
//        - fail_next N: the next N requests answer fail_status (default 503) with
//          {"error":"temporarily_unavailable"} without reaching oidc-provider (counted as error).
//        Fields left out keep their current values.
//   GET  /test/resource  (Authorization: Bearer <access token>)
//        -> 200 {"active":true,"client_id":...,"sub":...,"scope":...} for a live access token
//        (code flow or client credentials); 401 {"error":"invalid_token"} otherwise. A stand-in
//        for a provider's API, to show a token works (or was revoked with its grant).

import * as crypto from 'node:crypto';
import * as http from 'node:http';

// oidc-provider prints notices with console.info (stdout); stdout carries only
// the start-up line. Done before the dynamic import so nothing printed at load
// time reaches stdout.
console.log = console.error;
console.info = console.error;
const { default: Provider } = await import('oidc-provider');
// oidc-provider's own in-memory adapter, over a bigger store: its default
// keeps about 1000 recently used entries (every model together), so a busy
// test process could evict a client or a grant another test still uses.
// (Deep imports: the package has no "exports" map; version pinned in package.json.)
const { default: MemoryAdapter } = await import('oidc-provider/lib/adapters/memory_adapter.js');
const { default: LRU } = await import('oidc-provider/lib/helpers/lru.js');
const STORE = new LRU({ maxSize: 1_000_000 });
class Adapter extends MemoryAdapter {
  constructor(model) {
    super(model, STORE);
  }
}

const SCOPES = ['openid', 'offline_access', 'profile', 'email', 'read', 'write', 'admin'];
const DEFAULT_ACCESS_TOKEN_TTL = positiveInt(process.env.OAUTH_ACCESS_TOKEN_TTL, 300);
const DEFAULT_REFRESH_TOKEN_TTL = 14 * 24 * 3600;
const MAX_BODY = 1024 * 1024;

function positiveInt(text, fallback) {
  const value = Number(text);
  return Number.isInteger(value) && value > 0 ? value : fallback;
}

// client_id -> {authMethod, accessTokenTtl, refreshTokenTtl, tokenDelayMs, onDisconnect, failNext, failStatus}
const clientSettings = new Map();
// client_id -> {count, success, error, aborted, by_grant}
const tokenCounts = new Map();
// client_id -> {count, success, error}
const revocationCounts = new Map();

function counterFor(map, clientId, fresh) {
  let counter = map.get(clientId);
  if (!counter) {
    counter = fresh();
    map.set(clientId, counter);
  }
  return counter;
}
const freshTokenCounter = () => ({ count: 0, success: 0, error: 0, aborted: 0, by_grant: {} });
const freshRevocationCounter = () => ({ count: 0, success: 0, error: 0 });

function sumCounters(map, fresh) {
  const total = fresh();
  for (const counter of map.values()) {
    for (const [name, value] of Object.entries(counter)) {
      if (name === 'by_grant') {
        for (const [grant, n] of Object.entries(value)) total.by_grant[grant] = (total.by_grant[grant] ?? 0) + n;
      } else {
        total[name] += value;
      }
    }
  }
  return total;
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const htmlEscape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const randomHex = (bytes) => crypto.randomBytes(bytes).toString('hex');

// Bind first: the issuer URL contains the port.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const settingsOf = (client) => clientSettings.get(client?.clientId) ?? {};

const provider = new Provider(issuer, {
  clients: [],
  adapter: Adapter,
  cookies: { keys: [randomHex(32)] },
  scopes: SCOPES,
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },

  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  ttl: {
    AccessToken: (_ctx, _token, client) => settingsOf(client).accessTokenTtl ?? DEFAULT_ACCESS_TOKEN_TTL,
    ClientCredentials: (_ctx, _token, client) => settingsOf(client).accessTokenTtl ?? DEFAULT_ACCESS_TOKEN_TTL,
    RefreshToken: (_ctx, _token, client) => settingsOf(client).refreshTokenTtl ?? DEFAULT_REFRESH_TOKEN_TTL,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 3600,
    Grant: DEFAULT_REFRESH_TOKEN_TTL,
    IdToken: 300,
  },
});

// Error details are only in this event; the HTTP answer is generic.
provider.on('grant.error', (ctx, err) => {
  console.error(`grant.error: client=${ctx.oidc?.client?.clientId ?? '?'} ${err.name}: ${err.error_detail ?? err.error_description ?? err.message}`);
});
provider.on('server_error', (_ctx, err) => console.error(`server_error: ${err.stack ?? err}`));

// The client id in an HTTP Basic authorization header (RFC 6749 §2.3.1:
// form-urlencoded, then base64).
function basicClientId(req) {
  const header = req.headers.authorization ?? '';
  if (!header.toLowerCase().startsWith('basic ')) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
  } catch {
    return decoded.slice(0, colon);
  }
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

const CLIENT_AUTH_ENDPOINTS = new Set(['/token', '/token/revocation', '/token/introspection']);

function rejectWrongAuthMethod(ctx, settings, basic, form) {
  // oidc-provider treats client_secret_basic and client_secret_post as
  // interchangeable; real providers often do not, and the broker must use the
  // method its catalog names, so this server holds each client to its own.
  const used = basic !== undefined ? 'client_secret_basic' : form.has('client_secret') ? 'client_secret_post' : undefined;
  if (settings === undefined || used === undefined || used === settings.authMethod) return false;
  ctx.status = 401;
  ctx.set('cache-control', 'no-store');
  ctx.set('www-authenticate', 'Basic realm="oauth-server"');
  ctx.body = {
    error: 'invalid_client',
    error_description: `client authentication failed: registered ${settings.authMethod}, got ${used}`,
  };
  return true;
}

// Client-authentication method, counting and behaviour injection for the
// token, revocation and introspection endpoints.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || !CLIENT_AUTH_ENDPOINTS.has(ctx.path)) {
    await next();
    return;
  }
  // Read the body here to learn the client (Basic or client_id in the body)
  // and the grant type before oidc-provider runs; it then reads the consumed
  // body from ctx.request.body (its documented fallback for upstream parsers;
  // it warns once on stderr).
  const raw = await readBody(ctx.req);
  ctx.request.body = raw;
  const form = new URLSearchParams(raw);
  const basic = basicClientId(ctx.req);
  const clientId = basic ?? form.get('client_id') ?? '';
  const settings = clientSettings.get(clientId);

  if (ctx.path !== '/token') {
    const counter = ctx.path === '/token/revocation'
      ? counterFor(revocationCounts, clientId, freshRevocationCounter)
      : { count: 0, success: 0, error: 0 };
    counter.count += 1;
    try {
      if (!rejectWrongAuthMethod(ctx, settings, basic, form)) await next();
    } finally {
      if (ctx.status === 200) counter.success += 1;
      else counter.error += 1;
    }
    return;
  }

  const grantType = form.get('grant_type') ?? '';
  const counter = counterFor(tokenCounts, clientId, freshTokenCounter);
  counter.count += 1;
  counter.by_grant[grantType] = (counter.by_grant[grantType] ?? 0) + 1;

  if (settings?.tokenDelayMs > 0) {
    let hungUp = false;
    const onClose = () => { if (!ctx.res.writableFinished) hungUp = true; };
    ctx.res.once('close', onClose);
    await sleep(settings.tokenDelayMs);
    ctx.res.off('close', onClose);
    if ((hungUp || ctx.req.socket.destroyed) && settings.onDisconnect === 'drop') {
      counter.aborted += 1;
      return;
    }
  }
  try {
    if (settings?.failNext > 0) {
      settings.failNext -= 1;
      ctx.status = settings.failStatus;
      ctx.set('cache-control', 'no-store');
      ctx.body = { error: 'temporarily_unavailable', error_description: 'injected by /test/clients/{id}/behaviour' };
      return;
    }
    if (!rejectWrongAuthMethod(ctx, settings, basic, form)) await next();
  } finally {
    if (ctx.status === 200) counter.success += 1;
    else counter.error += 1;
  }
});

async function registerClient(body) {
  const grantTypes = body.grant_types ?? ['authorization_code', 'refresh_token'];
  const metadata = {
    client_id: `client-${randomHex(12)}`,
    client_secret: randomHex(24),
    redirect_uris: body.redirect_uris ?? [],
    grant_types: grantTypes,
    response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
    token_endpoint_auth_method: body.token_endpoint_auth_method ?? 'client_secret_basic',
    scope: body.scope ?? SCOPES.join(' '),
  };
  await provider.Client.validate(metadata);
  await provider.Client.adapter.upsert(metadata.client_id, metadata);
  clientSettings.set(metadata.client_id, {
    authMethod: metadata.token_endpoint_auth_method,
    accessTokenTtl: body.access_token_ttl,
    refreshTokenTtl: body.refresh_token_ttl,
    tokenDelayMs: 0,
    onDisconnect: 'process',
    failNext: 0,
    failStatus: 503,
  });
  return metadata;
}

async function testRoute(req, res, url) {
  if (req.method === 'POST' && url.pathname === '/test/clients') {
    let body;
    try {
      body = JSON.parse((await readBody(req)) || '{}');
    } catch (err) {
      sendJson(res, 400, { error: 'invalid_request', error_description: `body is not JSON: ${err.message}` });
      return;
    }
    try {
      sendJson(res, 201, await registerClient(body));
    } catch (err) {
      sendJson(res, 400, { error: 'invalid_client_metadata', error_description: err.error_description ?? err.message });
    }
    return;
  }
  const behaviour = url.pathname.match(/^\/test\/clients\/([^/]+)\/behaviour$/);
  if (req.method === 'POST' && behaviour) {
    const settings = clientSettings.get(decodeURIComponent(behaviour[1]));
    if (!settings) {
      sendJson(res, 404, { error: 'no such client' });
      return;
    }
    let body;
    try {
      body = JSON.parse((await readBody(req)) || '{}');
    } catch (err) {
      sendJson(res, 400, { error: `body is not JSON: ${err.message}` });
      return;
    }
    if (body.on_disconnect !== undefined && !['process', 'drop'].includes(body.on_disconnect)) {
      sendJson(res, 400, { error: 'on_disconnect must be "process" or "drop"' });
      return;
    }
    if (body.token_delay_ms !== undefined) settings.tokenDelayMs = Number(body.token_delay_ms) || 0;
    if (body.on_disconnect !== undefined) settings.onDisconnect = body.on_disconnect;
    if (body.fail_next !== undefined) settings.failNext = Number(body.fail_next) || 0;
    if (body.fail_status !== undefined) settings.failStatus = Number(body.fail_status) || 503;
    sendJson(res, 200, { ok: true });
    return;
  }
  if (req.method === 'GET' && url.pathname === '/test/token-requests') {
    const clientId = url.searchParams.get('client_id');
    sendJson(res, 200, clientId === null
      ? sumCounters(tokenCounts, freshTokenCounter)
      : structuredClone(tokenCounts.get(clientId) ?? freshTokenCounter()));
    return;
  }
  if (req.method === 'GET' && url.pathname === '/test/revocation-requests') {
    const clientId = url.searchParams.get('client_id');
    sendJson(res, 200, clientId === null
      ? sumCounters(revocationCounts, freshRevocationCounter)
      : { ...(revocationCounts.get(clientId) ?? freshRevocationCounter()) });
    return;
  }
  if (req.method === 'GET' && url.pathname === '/test/resource') {
    const header = req.headers.authorization ?? '';
    const value = header.toLowerCase().startsWith('bearer ') ? header.slice(7).trim() : '';
    const token = value
      ? (await provider.AccessToken.find(value)) ?? (await provider.ClientCredentials.find(value))
      : undefined;
    if (!token || token.isExpired) {
      res.setHeader('www-authenticate', 'Bearer error="invalid_token"');
      sendJson(res, 401, { error: 'invalid_token' });
      return;
    }
    sendJson(res, 200, {
      active: true, client_id: token.clientId, sub: token.accountId ?? null, scope: token.scope ?? '',
    });
    return;
  }
  sendJson(res, 404, { error: 'no such test route' });
}

// The login and consent pages (oidc-provider's interaction API).
function page(title, forms) {
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${htmlEscape(title)}</title></head>\n`
    + `<body><h1>${htmlEscape(title)}</h1>\n${forms.join('\n')}\n</body></html>\n`;
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
  });
  res.end(html);
}

async function interactionRoute(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction cookie does not match the URL');
  const base = `/interaction/${encodeURIComponent(uid)}`;
  const abortForm = `<form method="post" action="${base}/abort"><button type="submit">Cancel</button></form>`;

  if (req.method === 'GET' && action === undefined) {
    const clientId = htmlEscape(details.params.client_id);
    if (details.prompt.name === 'login') {
      sendHtml(res, 200, page(`Sign in to ${clientId}`, [
        `<form method="post" action="${base}/login">`
          + '<input type="text" name="login" value="">'
          + '<input type="password" name="password" value="">'
          + '<button type="submit">Sign in</button></form>',
        abortForm,
      ]));
    } else {
      const scopes = htmlEscape(details.params.scope ?? '');
      sendHtml(res, 200, page(`Authorize ${clientId} (${scopes})`, [
        `<form method="post" action="${base}/confirm"><button type="submit">Allow</button></form>`,
        abortForm,
      ]));
    }
    return;
  }
  if (req.method !== 'POST' || action === undefined) {
    sendJson(res, 405, { error: 'method not allowed' });
    return;
  }
  const form = new URLSearchParams(await readBody(req));
  if (action === 'login') {
    const login = form.get('login');
    if (details.prompt.name !== 'login' || !login) {
      sendJson(res, 400, { error: 'not a login step, or no login given' });
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  if (action === 'confirm') {
    if (details.prompt.name !== 'consent') {
      sendJson(res, 400, { error: 'not a consent step' });
      return;
    }
    const { prompt: { details: missing }, grantId, session, params } = details;
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    if (missing.missingResourceScopes) {
      for (const [indicator, scope] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scope.join(' '));
      }
    }
    await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, { mergeWithLastSubmission: true });
    return;
  }
  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }
  sendJson(res, 404, { error: 'no such interaction step' });
}

const providerCallback = provider.callback();
server.on('request', (req, res) => {
  const url = new URL(req.url ?? '/', issuer);
  const fail = (what) => (err) => {
    console.error(`${what} failed: ${err.stack ?? err}`);
    if (!res.headersSent) sendJson(res, 500, { error: `${what} failed`, error_description: String(err.message ?? err) });
  };
  if (url.pathname.startsWith('/test/')) {
    testRoute(req, res, url).catch(fail('test route'));
    return;
  }
  const interaction = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/);
  if (interaction) {
    interactionRoute(req, res, decodeURIComponent(interaction[1]), interaction[2]).catch(fail('interaction'));
    return;
  }
  providerCallback(req, res);
});

// Die with the parent: the test process holds our stdin open until it exits.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

process.stdout.write(`${JSON.stringify({
  issuer,
  port,
  authorization_endpoint: `${issuer}/auth`,
  token_endpoint: `${issuer}/token`,
  revocation_endpoint: `${issuer}/token/revocation`,
  introspection_endpoint: `${issuer}/token/introspection`,
  resource_endpoint: `${issuer}/test/resource`,
  scopes: SCOPES,
})}\n`);
