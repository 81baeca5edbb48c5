// An OpenID Provider for tests and `just up` (npm oidc-provider 9, a certified OP).
// Configured by environment; prints `IDP_READY <issuer>` once it answers.
//   IDP_PORT (0 = a free port)  IDP_PATH (issuer path, e.g. /realm-b)
//   IDP_CLIENT_ID  IDP_CLIENT_SECRET  IDP_REDIRECT_URIS (comma-separated)
//   IDP_USERS (JSON: login name -> claims)  IDP_TOKEN_TTL (seconds)
//   IDP_RESOURCE (the resource indicator it issues RFC 9068 JWT access tokens for)
// Any password is accepted: these are test users, never real ones.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const env = process.env;
const mount = (env.IDP_PATH ?? '').replace(/\/$/, '');
const users = JSON.parse(env.IDP_USERS ?? JSON.stringify({
  alice: { email: 'alice@example.test', email_verified: true, name: 'Alice', groups: ['admins'] },
  bob: { email: 'bob@example.test', email_verified: true, name: 'Bob', groups: [] },
  carol: { email: 'carol@example.test', email_verified: false, name: 'Carol', groups: ['admins'] },
}));

let handle;
const server = createServer((req, res) => {
  if (!handle) { res.statusCode = 503; res.end(); return; }
  // Tests change a user's claims (their groups, say) as an administrator would at a real
  // provider: PUT <issuer>/test-users/<login> with the user's claims as JSON.
  const editing = req.method === 'PUT' && req.url.startsWith(`${mount}/test-users/`);
  if (editing) {
    const login = decodeURIComponent(req.url.slice(`${mount}/test-users/`.length));
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      try { users[login] = JSON.parse(body); res.statusCode = 204; } catch { res.statusCode = 400; }
      res.end();
    });
    return;
  }
  if (mount) {
    if (!req.url.startsWith(`${mount}/`)) { res.statusCode = 404; res.end(); return; }
    // oidc-provider reads its mount path from originalUrl.
    req.originalUrl = req.url;
    req.url = req.url.slice(mount.length);
  }
  handle(req, res);
});
await new Promise((ready) => server.listen(Number(env.IDP_PORT ?? 4001), '127.0.0.1', ready));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}${mount}`;
const ttl = Number(env.IDP_TOKEN_TTL ?? 3600);
const resource = env.IDP_RESOURCE ?? 'urn:surge:api';

const provider = new Provider(issuer, {
  clients: [{
    client_id: env.IDP_CLIENT_ID ?? 'gateway',
    client_secret: env.IDP_CLIENT_SECRET ?? 'gatewaysecret',
    redirect_uris: (env.IDP_REDIRECT_URIS ?? 'http://127.0.0.1:8080/callback').split(','),
    grant_types: ['authorization_code', 'refresh_token'],
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username', 'groups'],
    groups: ['groups'],
  },
  // Every granted scope's claims go into the ID token, as most providers do.
  conformIdTokenClaims: false,
  async findAccount(_ctx, id) {
    return { accountId: id, claims: async () => ({ sub: id, preferred_username: id, ...users[id] }) };
  },
  pkce: { required: () => true },
  // A key of its own per process: the built-in development key is the same everywhere.
  jwks: { keys: [{
    ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
    use: 'sig', alg: 'RS256', kid: `idp-${port}-${Date.now()}`,
  }] },
  // Cookies ignore ports: a name per instance keeps two providers' sessions apart.
  cookies: { keys: [randomBytes(16).toString('hex')], names: { session: `_session_${port}`, interaction: `_interaction_${port}`, resume: `_interaction_resume_${port}` } },
  ttl: {
    AccessToken: ttl, IdToken: ttl, AuthorizationCode: 60, RefreshToken: 86400,
    Interaction: 600, Session: 3600, Grant: 86400,
  },
  features: {
    claimsParameter: { enabled: true },
    // An authorization that names `resource` (RFC 8707) gets an RFC 9068 access token for it:
    // `typ: at+jwt`, the resource as audience. Without one, access tokens stay opaque (for
    // userinfo), as before.
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo(_ctx, indicator) {
        if (indicator !== resource) throw new errors.InvalidTarget();
        return { scope: 'api', audience: resource, accessTokenFormat: 'jwt', accessTokenTTL: ttl, jwt: { sign: { alg: 'RS256' } } };
      },
    },
  },
  // Like most providers, its access tokens name the person only by `sub`; a user whose
  // claims say `access_token_claims: true` also gets email and groups in them (as providers
  // configured to do so send them).
  async extraTokenClaims(_ctx, token) {
    const user = users[token.accountId];
    if (token.kind !== 'AccessToken' || !token.resourceServer || !user?.access_token_claims) return undefined;
    return { email: user.email, email_verified: user.email_verified, groups: user.groups };
  },
});
handle = provider.callback();
console.log(`IDP_READY ${issuer}`);
const stop = () => { server.close(() => process.exit(0)); server.closeAllConnections(); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
