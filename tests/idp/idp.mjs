// A real OpenID provider for postern's integration tests: panva's
// oidc-provider on 127.0.0.1, with a client-credentials client whose
// access tokens are JWTs (RFC 9068, through resource indicators), and a
// client for postern's browser sign-in (authorization code with PKCE,
// refresh tokens rotated on every use, RP-initiated logout). Its login
// page is the provider's development form: any password signs in as the
// account named, whose groups come from ACCOUNTS.
//
// Usage: node idp.mjs PORT   (0 picks a free port)
// Prints one JSON line, {"issuer": ..., "port": ...}, once it listens.
//
// Besides the provider's own endpoints, it serves test-only controls:
//   POST /test/rotate  new signing keys; body {"keep_old": bool}
//   POST /test/sign    sign {"header": {...}, "claims": {...}} with the
//                      current key for header.alg (default RS256)
//   POST /test/postern register postern's callback and post-logout URLs;
//                      body {"redirect_uris": [...],
//                      "post_logout_redirect_uris": [...],
//                      "access_token_ttl": seconds}
//   GET  /test/stats   {"jwks_requests": N, "refreshes": N,
//                      "refresh_failures": N, "sign_outs": N}

import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import { SignJWT, importJWK } from 'jose';

// stdout carries only the start line: the test reads that one line and
// closes the pipe, so the provider's own notes go to stderr.
console.log = console.error;
console.info = console.error;

const CLIENT = { id: 'svc', secret: 'svc-secret' };
const POSTERN = { id: 'postern', secret: 'postern-secret' };

// People who can sign in. `many` has enough groups to pass 4 KB.
const ACCOUNTS = {
  alice: { email: 'alice@example.com', groups: ['dev', 'ops'] },
  bob: { email: 'bob@example.com', groups: ['finance'] },
  many: {
    email: 'many@example.com',
    groups: Array.from({ length: 200 }, (_, i) => `team-with-a-long-name-${i}`),
  },
  // Providers that send email_verified as a string, and one that sends
  // a value that is neither a boolean nor "true" or "false".
  strtrue: { email: 'strtrue@example.com', groups: [], email_verified: 'true' },
  strfalse: { email: 'strfalse@example.com', groups: [], email_verified: 'false' },
  oddverified: { email: 'odd@example.com', groups: [], email_verified: 'yes' },
};

// postern's registration, set by POST /test/postern.
let postern = { redirect_uris: [], post_logout_redirect_uris: [], access_token_ttl: 3600 };

async function findAccount(ctx, id) {
  const account = ACCOUNTS[id];
  if (!account) return undefined;
  return {
    accountId: id,
    claims: () => ({
      sub: id,
      preferred_username: id,
      email: account.email,
      email_verified: account.email_verified ?? true,
      groups: account.groups,
    }),
  };
}

// Signs out without a confirmation click: the provider's form, submitted
// with logout=yes at once.
function logoutSource(ctx, form) {
  ctx.body = `<!doctype html><html><body>${form}
<input type="hidden" name="logout" value="yes" form="op.logoutForm">
<script>document.forms[0].submit();</script></body></html>`;
}

function newKey(alg) {
  const { privateKey } = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg, use: 'sig' };
}

function makeProvider(issuer, keys) {
  const clients = [{
    client_id: CLIENT.id,
    client_secret: CLIENT.secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  }];
  if (postern.redirect_uris.length > 0) {
    clients.push({
      client_id: POSTERN.id,
      client_secret: POSTERN.secret,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: postern.redirect_uris,
      post_logout_redirect_uris: postern.post_logout_redirect_uris,
    });
  }
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys },
    findAccount,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    // The ID token carries the claims of the granted scopes.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    ttl: {
      AccessToken: (ctx, token, client) => (client?.clientId === POSTERN.id
        ? postern.access_token_ttl : 3600),
    },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: () => true,
    // Grant what postern asks for without a consent screen.
    loadExistingGrant: async (ctx) => {
      const { Grant } = ctx.oidc.provider;
      const found = ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (found) {
        const grant = await Grant.find(found);
        if (grant) return grant;
      }
      const grant = new Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile groups offline_access');
      await grant.save();
      return grant;
    },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: () => true,
        // The resource is the token's audience; `urn:postern:short`
        // gets tokens that live one second, for expiry tests.
        getResourceServerInfo: (ctx, resource) => ({
          scope: 'api',
          audience: resource,
          accessTokenTTL: resource === 'urn:postern:short' ? 1 : 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') stats.refreshes += 1;
  });
  provider.on('grant.error', (ctx) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') stats.refresh_failures += 1;
  });
  provider.on('end_session.success', () => { stats.sign_outs += 1; });
  return { keys, handle: provider.callback() };
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let text = '';
    req.on('data', (chunk) => { text += chunk; });
    req.on('end', () => {
      try { resolve(text ? JSON.parse(text) : {}); } catch (e) { reject(e); }
    });
  });
}

function reply(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const port = Number(process.argv[2] ?? 0);
let current;
let issuer;
const stats = { jwks_requests: 0, refreshes: 0, refresh_failures: 0, sign_outs: 0 };

async function control(req, res, path) {
  if (path === '/test/rotate' && req.method === 'POST') {
    const { keep_old: keepOld } = await readJson(req);
    const keys = [newKey('RS256'), newKey('ES256'), ...(keepOld ? current.keys : [])];
    current = makeProvider(issuer, keys);
    return reply(res, 200, { kids: keys.map((k) => k.kid) });
  }
  if (path === '/test/sign' && req.method === 'POST') {
    const { header = {}, claims } = await readJson(req);
    const alg = header.alg ?? 'RS256';
    const jwk = current.keys.find((k) => k.alg === alg);
    const key = await importJWK(jwk, alg);
    const token = await new SignJWT(claims)
      .setProtectedHeader({ kid: jwk.kid, typ: 'JWT', ...header, alg })
      .sign(key);
    return reply(res, 200, { token });
  }
  if (path === '/test/postern' && req.method === 'POST') {
    postern = { ...postern, ...(await readJson(req)) };
    current = makeProvider(issuer, current.keys);
    return reply(res, 200, { client_id: POSTERN.id });
  }
  if (path === '/test/stats') {
    return reply(res, 200, stats);
  }
  return reply(res, 404, { error: 'unknown test control' });
}

const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://127.0.0.1').pathname;
  if (path.startsWith('/test/')) {
    control(req, res, path).catch((e) => reply(res, 500, { error: String(e) }));
    return;
  }
  if (path === '/jwks') stats.jwks_requests += 1;
  current.handle(req, res);
});

server.listen(port, '127.0.0.1', () => {
  const bound = server.address().port;
  issuer = `http://127.0.0.1:${bound}`;
  current = makeProvider(issuer, [newKey('RS256'), newKey('ES256')]);
  process.stdout.write(`${JSON.stringify({ issuer, port: bound })}\n`);
});

// Exit with the test process that started this one.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
