// A real OpenID Connect issuer for the JWT tests: `oidc-provider` (9.x) on a
// free loopback port. The Rust suite starts it once per test process
// (`tests/suite/oidc.rs`) and talks to it over HTTP; it exits when its stdin
// closes, so it dies with the test process.
//
// Start-up:  node tests/tools/oidc/server.mjs
//   stdout:  exactly one JSON line once listening:
//            {"issuer":"http://127.0.0.1:PORT","port":PORT,"jwks_uri":"http://127.0.0.1:PORT/jwks",
//             "token_endpoint":"http://127.0.0.1:PORT/token","resource":"https://locksmith.test/api",
//             "client_secret":"locksmith-test-secret"}
//   stderr:  oidc-provider's notices and warnings (everything else this process prints).
//
// Signing key: a fresh RSA-2048 key generated at start (kid "oidc-test-<random>"),
// published through oidc-provider's normal `jwks_uri`. Nothing is written to disk.
//
// Getting a token for tenant X with roles Y (OAuth 2.0 client credentials +
// RFC 8707 resource indicators; JWT access tokens, RFC 9068):
//   POST /token  grant_type=client_credentials&resource=https://locksmith.test/api
//   with HTTP Basic auth `<client_id>:locksmith-test-secret`. The access token is a
//   JWT (alg RS256, typ at+jwt) with iss, sub (= client_id), aud (= the resource),
//   iat, exp (+300 s), jti, client_id, plus `tenant` and `roles` taken from the
//   client's row in CLIENTS below. Add a row for another tenant/roles combination.
//   Any other resource is refused (invalid_target).
//
// Test-only routes (on /test/, a path oidc-provider does not use):
//   POST /test/sign          {"claims":{...},"header":{...}} -> {"token":"<compact JWT>"}
//                            Signs the claims exactly as given (nothing added) with the
//                            provider's OWN private key, RS256. The header starts as
//                            {"alg":"RS256","typ":"JWT","kid":<provider kid>}; fields in
//                            "header" replace those (a null value removes one). Overrides
//                            change only the header text: the signature is always RS256
//                            with the provider key. So tests can make tokens that are
//                            expired, not yet valid, for another audience or issuer, all
//                            signed by the real issuer key.
//   GET  /test/public-key    {"kid":..., "pem":"-----BEGIN PUBLIC KEY-----...", "jwk":{...}}
//                            The public key, so a test can forge an HS256 token using the
//                            PEM (or JWK JSON) bytes as the HMAC secret.
//   GET  /test/jwks-fetches?probe=TAG  {"count":N}
//                            How many GET /jwks?probe=TAG requests arrived. Point a verifier
//                            at `<jwks_uri>?probe=<unique tag>` to count its JWKS fetches
//                            without counting other tests' fetches.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

// oidc-provider prints notices with console.info (stdout); stdout carries
// only the start-up line, so everything else goes to stderr. Done before the
// dynamic import below so nothing printed at load time reaches stdout.
console.log = console.error;
console.info = console.error;
const { default: Provider, errors } = await import('oidc-provider');

const RESOURCE = 'https://locksmith.test/api';
const CLIENT_SECRET = 'locksmith-test-secret';

// client_id -> the claims its client-credentials tokens carry. `roles` may be
// an array or a space-separated string (both forms the edge accepts); rows
// with bad values exist so refusals can be tested against real tokens.
const CLIENTS = {
  'tenant-acme-admin': { tenant: 'acme', roles: ['admin'] },
  'tenant-acme-write': { tenant: 'acme', roles: ['read', 'write'] },
  'tenant-acme-string-roles': { tenant: 'acme', roles: 'read write' },
  'tenant-beta-read': { tenant: 'beta', roles: ['read'] },
  'tenant-beta-write': { tenant: 'beta', roles: ['read', 'write'] },
  'tenant-acme-unknown-role': { tenant: 'acme', roles: ['read', 'superuser'] },
  'tenant-bad-slug': { tenant: 'Not A Slug', roles: ['read'] },
  'no-tenant': { roles: ['read'] },
};

const kid = `oidc-test-${crypto.randomBytes(6).toString('hex')}`;
const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
const publicJwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
const publicPem = publicKey.export({ format: 'pem', type: 'spki' });

const jwksFetches = new Map();

const b64url = (value) => Buffer.from(value).toString('base64url');

function signCompact(claims, headerOverrides) {
  const header = { alg: 'RS256', typ: 'JWT', kid };
  for (const [name, value] of Object.entries(headerOverrides ?? {})) {
    if (value === null) delete header[name];
    else header[name] = value;
  }
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  // Node's default for an RSA key is RSASSA-PKCS1-v1_5, i.e. RS256 with sha256.
  const signature = crypto.sign('sha256', Buffer.from(signingInput), privateKey);
  return `${signingInput}.${signature.toString('base64url')}`;
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 1024 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

async function testRoute(req, res, url) {
  if (req.method === 'POST' && url.pathname === '/test/sign') {
    let body;
    try {
      body = await readJson(req);
    } catch (err) {
      sendJson(res, 400, { error: `body is not JSON: ${err.message}` });
      return;
    }
    if (typeof body?.claims !== 'object' || body.claims === null) {
      sendJson(res, 400, { error: 'body must be {"claims": {...}, "header": {...}}' });
      return;
    }
    sendJson(res, 200, { token: signCompact(body.claims, body.header) });
    return;
  }
  if (req.method === 'GET' && url.pathname === '/test/public-key') {
    sendJson(res, 200, { kid, pem: publicPem, jwk: publicJwk });
    return;
  }
  if (req.method === 'GET' && url.pathname === '/test/jwks-fetches') {
    sendJson(res, 200, { count: jwksFetches.get(url.searchParams.get('probe') ?? '') ?? 0 });
    return;
  }
  sendJson(res, 404, { error: 'no such test route' });
}

// Bind first: the issuer URL contains the port.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: Object.keys(CLIENTS).map((clientId) => ({
    client_id: clientId,
    client_secret: CLIENT_SECRET,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: { keys: [privateJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  routes: { jwks: '/jwks', token: '/token' },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf ?? undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator !== RESOURCE) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: 'api',
          audience: RESOURCE,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: async (_ctx, token) => {
    if (token.kind !== 'ClientCredentials') return undefined;
    return CLIENTS[token.clientId];
  },
});

// Error details are only in this event; the HTTP answer is generic.
provider.on('grant.error', (_ctx, err) => {
  console.error(`grant.error: ${err.name}: ${err.message} ${err.error_description ?? ''}`);
});

const providerCallback = provider.callback();
server.on('request', (req, res) => {
  const url = new URL(req.url ?? '/', issuer);
  if (url.pathname.startsWith('/test/')) {
    testRoute(req, res, url).catch((err) => {
      console.error(`test route failed: ${err.stack ?? err}`);
      if (!res.headersSent) sendJson(res, 500, { error: 'test route failed' });
    });
    return;
  }
  if (req.method === 'GET' && url.pathname === '/jwks') {
    const probe = url.searchParams.get('probe') ?? '';
    jwksFetches.set(probe, (jwksFetches.get(probe) ?? 0) + 1);
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
  jwks_uri: `${issuer}/jwks`,
  token_endpoint: `${issuer}/token`,
  resource: RESOURCE,
  client_secret: CLIENT_SECRET,
})}\n`);
