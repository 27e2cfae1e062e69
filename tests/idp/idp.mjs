// A real OpenID provider for postern's integration tests: panva's
// oidc-provider on 127.0.0.1, with a client-credentials client whose
// access tokens are JWTs (RFC 9068, through resource indicators).
//
// Usage: node idp.mjs PORT   (0 picks a free port)
// Prints one JSON line, {"issuer": ..., "port": ...}, once it listens.
//
// Besides the provider's own endpoints, it serves test-only controls:
//   POST /test/rotate  new signing keys; body {"keep_old": bool}
//   POST /test/sign    sign {"header": {...}, "claims": {...}} with the
//                      current key for header.alg (default RS256)
//   GET  /test/stats   {"jwks_requests": N}

import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import { SignJWT, importJWK } from 'jose';

const CLIENT = { id: 'svc', secret: 'svc-secret' };

function newKey(alg) {
  const { privateKey } = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg, use: 'sig' };
}

function makeProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT.id,
      client_secret: CLIENT.secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    }],
    jwks: { keys },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
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
const stats = { jwks_requests: 0 };

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
