// node-oidc-provider (panva) as a test authorization server for tokengate's
// Go tests: a second, independent implementation next to internal/testas, so
// the gateway is also checked against an AS that behaves differently (most
// visibly: its introspection endpoint refuses JWT-shaped tokens with 400
// unsupported_token_type instead of answering {"active":false}).
//
//   node server.mjs --port N [--config FILE] [--state DIR]
//
// --port (or NODEAS_PORT): listen on 127.0.0.1:N; the issuer is
//   http://127.0.0.1:N.
// --config FILE (or NODEAS_CONFIG_JSON, the same JSON inline):
//   {
//     "clients": [{"client_id": "...", "client_secret": "...", "scope": "read write",
//                  "can_introspect": true, ...any other oidc-provider client metadata}],
//     "token_ttl": 300,                       // seconds, access tokens of every kind
//     "resources": {"https://api.example": {...}}  // resource server overrides (see below)
//   }
// --state DIR: signing keys, stored tokens and request counts live there, so
//   a restart on the same port is the same server (same keys, same tokens).
//   Without it everything is in memory and a fresh key set is generated.
//
// Protocol on stdio: exactly one line, "READY <port>", on stdout once
// listening; everything else (oidc-provider's notices included) goes to
// stderr. The process exits when stdin closes, so a test binary that dies
// without cleaning up does not leave it running. Exit status 2 means the port
// was taken.
//
// Test-only endpoint: GET /__nodeas/stats answers {"counts":{"<path>":N}},
// the number of requests received per URL path (counted before oidc-provider
// sees them, so failed and rejected requests count too); DELETE resets them.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { parseArgs } from 'node:util';

// oidc-provider prints its notices with console.info, i.e. to stdout, some of
// them while its module is evaluated. stdout is reserved for the READY line,
// so every console method is pointed at stderr before the import below.
for (const m of ['log', 'info', 'debug']) {
  console[m] = (...args) => console.error(...args);
}

function fail(msg, code = 1) {
  process.stderr.write(`nodeas: ${msg}\n`);
  process.exit(code);
}

// URL.parse (node >= 20.18 / 22.1) is used by oidc-provider 9 when it checks
// resource indicators; an older node would fail only on the first such
// request, so refuse to start instead.
if (typeof URL.parse !== 'function') {
  fail(`node ${process.versions.node} is too old: oidc-provider 9 needs node >= 20.18`);
}

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    config: { type: 'string' },
    state: { type: 'string' },
  },
});

const port = Number(args.port ?? process.env.NODEAS_PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  fail('--port (or NODEAS_PORT) must be a TCP port');
}

let config = {};
try {
  if (args.config) {
    config = JSON.parse(fs.readFileSync(args.config, 'utf8'));
  } else if (process.env.NODEAS_CONFIG_JSON) {
    config = JSON.parse(process.env.NODEAS_CONFIG_JSON);
  }
} catch (err) {
  fail(`config: ${err.message}`);
}

const stateDir = args.state;
const stateFile = (name) => (stateDir ? path.join(stateDir, name) : undefined);

// Write-then-rename, so a reader (or the next start) never sees half a file.
function writeJSON(file, value) {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(value));
  fs.renameSync(tmp, file);
}

function readJSON(file) {
  if (!file) return undefined;
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  }
}

const tokenTTL = Number.isInteger(config.token_ttl) && config.token_ttl > 0 ? config.token_ttl : 300;

// --- signing keys -----------------------------------------------------------

// RS256 is oidc-provider's default for JWT access tokens; the P-256 key lets a
// resource be configured with ES256. Generated once per state directory and
// kept, so JWTs issued before a restart still verify after it.
async function loadOrCreateKeys() {
  const file = stateFile('jwks.json');
  const existing = readJSON(file);
  if (existing) return existing;
  const gen = (type, opts) => new Promise((resolve, reject) => {
    crypto.generateKeyPair(type, opts, (err, _pub, priv) => (err ? reject(err) : resolve(priv)));
  });
  const [rsa, ec] = await Promise.all([
    gen('rsa', { modulusLength: 2048 }),
    gen('ec', { namedCurve: 'P-256' }),
  ]);
  const jwks = {
    keys: [
      { ...rsa.export({ format: 'jwk' }), kid: `rsa-${crypto.randomBytes(6).toString('hex')}`, alg: 'RS256', use: 'sig' },
      { ...ec.export({ format: 'jwk' }), kid: `ec-${crypto.randomBytes(6).toString('hex')}`, alg: 'ES256', use: 'sig' },
    ],
  };
  if (file) writeJSON(file, jwks);
  return jwks;
}

// --- storage ----------------------------------------------------------------

// One map for every model, persisted to the state directory on each change.
// oidc-provider's own MemoryAdapter would lose every token on restart, while
// tests stop and restart the server to simulate an outage and expect the
// tokens issued before it to still be good afterwards (as with any real AS).
// Writes are synchronous: test traffic is small, and a write that returned is
// on disk even if the process is killed right after.
class Store {
  constructor(file) {
    this.file = file;
    this.map = new Map(readJSON(file) ?? []);
  }

  get(key) {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (e.exp !== null && e.exp <= Date.now()) {
      this.map.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key, value, expiresIn) {
    const exp = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : null;
    this.map.set(key, { value, exp });
    this.save();
  }

  // touch persists an in-place change of a stored value, keeping its expiry.
  touch() {
    this.save();
  }

  delete(keys) {
    let changed = false;
    for (const k of keys) changed = this.map.delete(k) || changed;
    if (changed) this.save();
  }

  *entries() {
    for (const [k, e] of this.map) {
      if (e.exp === null || e.exp > Date.now()) yield [k, e.value];
    }
  }

  save() {
    if (this.file) writeJSON(this.file, [...this.map]);
  }
}

const store = new Store(stateFile('store.json'));

// The adapter interface oidc-provider expects (see its MemoryAdapter).
// Secondary lookups scan: a test server holds a handful of entries.
class Adapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    store.set(this.key(id), payload, expiresIn);
  }

  async find(id) {
    return store.get(this.key(id));
  }

  findBy(field, value) {
    const prefix = `${this.model}:`;
    for (const [k, v] of store.entries()) {
      if (k.startsWith(prefix) && v[field] === value) return v;
    }
    return undefined;
  }

  async findByUid(uid) {
    return this.findBy('uid', uid);
  }

  async findByUserCode(userCode) {
    return this.findBy('userCode', userCode);
  }

  async consume(id) {
    const v = store.get(this.key(id));
    if (v) {
      v.consumed = Math.floor(Date.now() / 1000);
      store.touch();
    }
  }

  async destroy(id) {
    store.delete([this.key(id)]);
  }

  async revokeByGrantId(grantId) {
    const keys = [];
    for (const [k, v] of store.entries()) {
      if (v.grantId === grantId) keys.push(k);
    }
    store.delete(keys);
  }
}

// --- request counts -----------------------------------------------------------

const statsFile = stateFile('stats.json');
let counts = readJSON(statsFile) ?? {};

function shutdown() {
  // Counts are kept in memory while serving (a file write per request would
  // slow every test down) and saved here, so they survive a restart.
  if (statsFile) {
    try {
      writeJSON(statsFile, counts);
    } catch (err) {
      process.stderr.write(`nodeas: saving stats: ${err.message}\n`);
    }
  }
  process.exit(0);
}

// --- clients, scopes, resources -------------------------------------------------

const clients = [];
const introspectors = new Set();
const allScopes = new Set(['read', 'write', 'admin']);
for (const c of config.clients ?? []) {
  const { can_introspect: canIntrospect, ...metadata } = c;
  if (canIntrospect) introspectors.add(metadata.client_id);
  for (const s of (metadata.scope ?? '').split(' ').filter(Boolean)) allScopes.add(s);
  clients.push({
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    ...metadata,
  });
}

const resources = config.resources ?? {};

// --- the provider ----------------------------------------------------------------

const { default: Provider, errors } = await import('oidc-provider');

const issuer = `http://127.0.0.1:${port}`;
const jwks = await loadOrCreateKeys();

const provider = new Provider(issuer, {
  adapter: Adapter,
  clients,
  jwks,
  // Scopes not listed here are silently dropped from a token request without
  // a resource indicator, so every client scope must be known.
  scopes: ['openid', 'offline_access', ...allScopes],
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  // Pinned explicitly (they are oidc-provider's defaults) because the Go
  // harness builds its URLs from the same paths.
  routes: {
    token: '/token',
    introspection: '/token/introspection',
    revocation: '/token/revocation',
    jwks: '/jwks',
  },
  ttl: {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? tokenTTL,
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? tokenTTL,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // Mirrors internal/testas: a client marked can_introspect (the gateway)
      // gets real answers about any client's token; every other client gets
      // {"active":false}, as from an AS that does not know the caller as a
      // resource server. (oidc-provider's default lets any confidential
      // client introspect any token.)
      allowedPolicy: async (_ctx, client) => introspectors.has(client.clientId),
    },
    revocation: {
      enabled: true,
      // oidc-provider's default: a client may revoke only its own tokens.
      allowedPolicy: async (_ctx, client, token) => {
        if (token.clientId !== client.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No resource requested: none is assumed, so a plain client_credentials
      // token stays opaque (and introspectable).
      defaultResource: async () => undefined,
      // Any absolute URI is accepted as a resource; its token is an RS256 JWT
      // access token with aud = the resource and the client's requested
      // scopes. config.resources[uri] overrides this per resource (e.g.
      // {"jwt":{"sign":{"alg":"ES256"}}} or {"accessTokenFormat":"opaque"}).
      getResourceServerInfo: async (_ctx, resource) => ({
        scope: [...allScopes].join(' '),
        audience: resource,
        accessTokenTTL: tokenTTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
        ...resources[resource],
      }),
    },
  },
});

provider.on('server_error', (ctx, err) => {
  process.stderr.write(`nodeas: server_error on ${ctx.method} ${ctx.path}: ${err.stack ?? err}\n`);
});

const handle = provider.callback();

const server = http.createServer((req, res) => {
  const p = (req.url ?? '/').split('?', 1)[0];
  if (p === '/__nodeas/stats') {
    if (req.method === 'DELETE') counts = {};
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify({ counts }));
    return;
  }
  counts[p] = (counts[p] ?? 0) + 1;
  handle(req, res);
});

server.on('error', (err) => {
  if (err.code === 'EADDRINUSE') fail(`127.0.0.1:${port} is in use`, 2);
  fail(`listen 127.0.0.1:${port}: ${err.message}`);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`READY ${port}\n`);
});

process.stdin.on('end', shutdown);
process.stdin.on('error', shutdown);
process.stdin.resume();
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
