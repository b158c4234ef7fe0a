// openid-client (panva) as an mTLS client of tokenward (RFC 8705): tls_client_auth through
// mtls_endpoint_aliases, a certificate-bound token used at the server's API with the same
// certificate, then without it. Prints {"result": {...}} or {"error": message}.
import * as client from 'openid-client'
import * as https from 'node:https'
import { readFileSync } from 'node:fs'

const [issuer, clientId, certFile, keyFile] = process.argv.slice(2)
const tls = { cert: readFileSync(certFile), key: readFileSync(keyFile) }
const out = (value) => process.stdout.write(JSON.stringify(value) + '\n')

// A Fetch API over node:https presenting the client certificate (the CA comes from
// NODE_EXTRA_CA_CERTS). openid-client leaves the TLS layer to customFetch by design.
const mtlsFetch = (url, options) =>
  new Promise((resolve, reject) => {
    const request = https.request(url, { method: options.method, headers: options.headers, ...tls }, (response) => {
      const chunks = []
      response.on('data', (chunk) => chunks.push(chunk))
      response.on('end', () => {
        const headers = new Headers()
        for (const [name, value] of Object.entries(response.headers)) {
          for (const item of [].concat(value)) headers.append(name, item)
        }
        resolve(new Response(Buffer.concat(chunks), { status: response.statusCode, headers }))
      })
    })
    request.on('error', reject)
    if (options.body !== undefined && options.body !== null) request.write(options.body.toString())
    request.end()
  })

try {
  const config = await client.discovery(
    new URL(issuer), clientId, { use_mtls_endpoint_aliases: true }, client.TlsClientAuth(),
    { [client.customFetch]: mtlsFetch },
  )
  const tokens = await client.clientCredentialsGrant(config, { scope: 'read' })
  const withCert = await client.fetchProtectedResource(config, tokens.access_token, new URL(`${issuer}/api/hello`), 'GET')
  const introspected = await client.tokenIntrospection(config, tokens.access_token)
  const withoutCert = await fetch(`${issuer}/api/hello`, { headers: { authorization: `Bearer ${tokens.access_token}` } })
  out({
    result: {
      token_type: tokens.token_type,
      access_token: tokens.access_token,
      with_certificate: withCert.status,
      hello: await withCert.json(),
      introspection_cnf: introspected.cnf,
      without_certificate: withoutCert.status,
      challenge: withoutCert.headers.get('www-authenticate'),
    },
  })
} catch (error) {
  out({ error: `${error.name}: ${error.message} ${error.code ?? ''} ${JSON.stringify(error.cause ?? '')}` })
}
