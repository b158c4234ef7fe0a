// Dynamic client registration judged by openid-client (panva; OpenID-certified, strict):
// registers a client at tokenward's registration_endpoint (RFC 7591, with an initial access
// token), then runs authorization code + PKCE with it, and reads the registration back
// (RFC 7592) with the registration access token it was given.
// stdin/stdout protocol with the Python test: prints {"authorize": url}, reads the callback URL
// line, then prints {"result": {...}} or {"error": message} and exits.
import * as client from 'openid-client'
import * as readline from 'node:readline'

const [issuer, initialAccessToken, redirectUri] = process.argv.slice(2)
const insecure = [client.allowInsecureRequests] // loopback http in tests only
const lines = readline.createInterface({ input: process.stdin })
const nextLine = () => new Promise((resolve) => lines.once('line', resolve))
const out = (value) => process.stdout.write(JSON.stringify(value) + '\n')

try {
  const config = await client.dynamicClientRegistration(
    new URL(issuer),
    {
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
      client_name: 'openid-client judge',
      scope: 'openid profile',
    },
    undefined, // the secret it is given: client_secret_post, openid-client's default
    { initialAccessToken, execute: insecure },
  )
  const registered = config.clientMetadata()
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid profile',
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
  const read = await fetch(registered.registration_client_uri, {
    headers: { authorization: `Bearer ${registered.registration_access_token}` },
  })
  const readBack = await read.json()
  out({
    result: {
      client_id: registered.client_id,
      has_secret: typeof registered.client_secret === 'string',
      client_secret_expires_at: registered.client_secret_expires_at,
      aud: claims.aud,
      sub: claims.sub,
      userinfo_username: userinfo.preferred_username,
      has_refresh_token: typeof tokens.refresh_token === 'string',
      read_status: read.status,
      read_client_id: readBack.client_id,
      read_redirect_uris: readBack.redirect_uris,
    },
  })
} catch (error) {
  out({ error: `${error.name}: ${error.message} ${error.code ?? ''} ${JSON.stringify(error.cause ?? '')}` })
}
lines.close()
