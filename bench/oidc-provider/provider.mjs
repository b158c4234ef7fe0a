// The peer for make bench: oidc-provider configured as tokenward is in the bench (ES256 JWT
// access tokens via resource indicators, client_secret_basic, introspection, refresh rotation,
// authorization code + PKCE), one process, in-memory adapter (oidc-provider's default).
//
//   node provider.mjs PORT
// prints one JSON line {client_id, secret, resource}, then serves. Single-use credentials for the
// refresh and code figures are minted on request: a line `refresh N FILE` or `code N FILE` on
// standard input writes N values, one a line, to FILE and answers `ok` on standard output.
import { generateKeyPairSync, randomBytes, createHash } from 'node:crypto';
import { createInterface } from 'node:readline';
import { writeFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.argv[2]);
const issuer = `http://127.0.0.1:${port}`;
const resource = 'https://api.bench';
const opaqueResource = 'https://opaque.bench';
const clientId = 'bench';
const secret = `bench-secret-${'x'.repeat(40)}`;
const redirectUri = 'http://127.0.0.1/cb';
const verifier = 'v'.repeat(43);
const challenge = createHash('sha256').update(verifier).digest('base64url');

// oidc-provider's built-in memory adapter is an LRU of 1,000 entries: a round's pool of refresh
// tokens would evict itself. This one is a plain Map, as unbounded as a database table, and
// costs no more per call.
const store = new Map();
const grants = new Map();
class MapAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { payload, expiresAt });
    if (payload.grantId) {
      if (!grants.has(payload.grantId)) grants.set(payload.grantId, new Set());
      grants.get(payload.grantId).add(this.key(id));
    }
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) { store.delete(this.key(id)); return undefined; }
    return entry.payload;
  }

  async findByUid(uid) { return this.find(uid); }

  async findByUserCode(userCode) { return this.find(userCode); }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const key of grants.get(grantId) ?? []) store.delete(key);
    grants.delete(grantId);
  }
}

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  // tokenward answers a code exchange with a refresh token whenever the client may refresh.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  jwks: { keys: [jwk] },
  clients: [{
    client_id: clientId,
    client_secret: secret,
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
    redirect_uris: [redirectUri],
    response_types: ['code'],
    id_token_signed_response_alg: 'ES256',
    scope: 'openid offline_access read write',
  }],
  scopes: ['openid', 'offline_access', 'read', 'write'],
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  ttl: {
    AccessToken: 900, ClientCredentials: 900, AuthorizationCode: 60, IdToken: 3600,
    RefreshToken: 86400, Grant: 86400, Session: 86400, Interaction: 3600,
  },
  rotateRefreshToken: true, // tokenward rotates on every use
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      // oidc-provider introspects only opaque tokens: P5 asks for one with this resource.
      getResourceServerInfo: (_ctx, indicator) => (indicator === opaqueResource
        ? { scope: 'read write', audience: opaqueResource, accessTokenFormat: 'opaque', accessTokenTTL: 900 }
        : {
          scope: 'read write',
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 900,
          jwt: { sign: { alg: 'ES256' } },
        }),
    },
  },
});
provider.on('server_error', (_ctx, err) => console.error('server_error', err));

async function grantFor(accountId) {
  const grant = new provider.Grant({ accountId, clientId });
  grant.addOIDCScope('openid offline_access');
  grant.addResourceScope(resource, 'read');
  return grant.save();
}

async function mint(kind, count) {
  const client = await provider.Client.find(clientId);
  const values = [];
  for (let i = 0; i < count; i += 1) {
    const accountId = `user-${i}`;
    const grantId = await grantFor(accountId);
    const common = { accountId, client, grantId, authTime: Math.floor(Date.now() / 1000) };
    if (kind === 'refresh') {
      const token = new provider.RefreshToken({
        // No openid: tokenward's refresh answers carry no ID token either.
        ...common, scope: 'offline_access read', resource, gty: 'authorization_code',
      });
      values.push(await token.save());
    } else {
      const code = new provider.AuthorizationCode({
        ...common, scope: 'openid offline_access read', resource, redirectUri,
        codeChallenge: challenge, codeChallengeMethod: 'S256',
      });
      values.push(await code.save());
    }
  }
  return values;
}

createInterface({ input: process.stdin }).on('line', async (line) => {
  const [kind, count, file] = line.trim().split(' ');
  try {
    writeFileSync(file, (await mint(kind, Number(count))).join('\n') + '\n');
    process.stdout.write('ok\n');
  } catch (err) {
    process.stdout.write(`error ${err.message}\n`);
  }
});

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({
    client_id: clientId, secret, resource, opaque_resource: opaqueResource, redirect_uri: redirectUri, code_verifier: verifier,
  })}\n`);
});
