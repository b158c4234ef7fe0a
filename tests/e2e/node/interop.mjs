// Drives openid-client (panva; OpenID-certified, strict) against tokenward.
// stdin/stdout protocol with the Python test: prints {"authorize": url}, reads the callback URL
// line, then prints {"result": {...}} or {"error": message} and exits.
import * as client from 'openid-client'
import * as readline from 'node:readline'

const [issuer, clientId, clientSecret, redirectUri, serviceId, serviceSecret] = process.argv.slice(2)
const insecure = { execute: [client.allowInsecureRequests] } // loopback http in tests only
const lines = readline.createInterface({ input: process.stdin })
const nextLine = () => new Promise((resolve) => lines.once('line', resolve))
const out = (value) => process.stdout.write(JSON.stringify(value) + '\n')

try {
  const service = await client.discovery(new URL(issuer), serviceId, undefined, client.ClientSecretBasic(serviceSecret), insecure)
  const cc = await client.clientCredentialsGrant(service, { scope: 'read' })

  const config = await client.discovery(new URL(issuer), clientId, undefined, client.ClientSecretBasic(clientSecret), insecure)
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid profile read',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  })
  out({ authorize: url.href })
  const callback = await nextLine()
  // Checks iss (RFC 9207), state, PKCE, and the ID token (signature, iss, aud, nonce, exp, iat...)
  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  })
  const claims = tokens.claims()
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub)
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token)
  const active = await client.tokenIntrospection(config, refreshed.access_token)
  await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' })
  const revoked = await client.tokenIntrospection(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' })
  out({
    result: {
      client_credentials_type: cc.token_type,
      sub: claims.sub,
      sid: claims.sid,
      userinfo_username: userinfo.preferred_username,
      rotated: refreshed.refresh_token !== tokens.refresh_token,
      introspection_active: active.active,
      after_revocation_active: revoked.active,
    },
  })
} catch (error) {
  out({ error: `${error.name}: ${error.message} ${error.code ?? ''} ${JSON.stringify(error.cause ?? '')}` })
}
lines.close()
