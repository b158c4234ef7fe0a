// Drives openid-client (panva) through PAR + JAR + DPoP against tokenward: a signed request
// object (oauth4webapi's issueRequestObject) pushed to /par with private_key_jwt and a DPoP
// proof (nonce retry included), the browser sent with the request_uri only, the code exchanged
// with DPoP, userinfo called with the DPoP-bound token.
// stdin/stdout protocol with the Python test: prints {"authorize": url}, reads the callback URL
// line, then prints {"result": {...}} or {"error": message} and exits.
import * as client from 'openid-client'
import * as readline from 'node:readline'

const [issuer, clientId, redirectUri, privateJwkJson] = process.argv.slice(2)
const insecure = { execute: [client.allowInsecureRequests] } // loopback http in tests only
const lines = readline.createInterface({ input: process.stdin })
const nextLine = () => new Promise((resolve) => lines.once('line', resolve))
const out = (value) => process.stdout.write(JSON.stringify(value) + '\n')

try {
  const jwk = JSON.parse(privateJwkJson)
  const key = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign'])
  const signingKey = { key, kid: jwk.kid }
  const config = await client.discovery(new URL(issuer), clientId, undefined, client.PrivateKeyJwt(signingKey), insecure)
  const metadata = config.serverMetadata()
  const dpop = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'))
  const verifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const jar = await client.buildAuthorizationUrlWithJAR(
    config,
    {
      redirect_uri: redirectUri,
      scope: 'openid profile read',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    },
    signingKey,
  )
  const url = await client.buildAuthorizationUrlWithPAR(config, jar.searchParams, { DPoP: dpop })
  out({ authorize: url.href })
  const callback = await nextLine()
  const tokens = await client.authorizationCodeGrant(
    config,
    new URL(callback),
    { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true },
    undefined,
    { DPoP: dpop },
  )
  const claims = tokens.claims()
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub, { DPoP: dpop })
  out({
    result: {
      par_endpoint: metadata.pushed_authorization_request_endpoint,
      authorize_params: [...url.searchParams.keys()].sort(),
      token_type: tokens.token_type,
      sub: claims.sub,
      userinfo_username: userinfo.preferred_username,
    },
  })
} catch (error) {
  out({ error: `${error.name}: ${error.message} ${error.code ?? ''} ${JSON.stringify(error.cause ?? '')}` })
}
lines.close()
