// A real OpenID provider for the tests: oidc-provider (OpenID Certified), on
// loopback, with one confidential client and a few users with groups. Its
// login and consent pages are the library's own (devInteractions): any
// password is accepted for a known user, an unknown user is refused.
//
// Started by tests/src/oidc.rs as
//   node provider.mjs CONFIG.json
// where CONFIG.json is
//   { "client_id": "...", "client_secret": "...", "redirect_uris": ["..."],
//     "users": { "name": { "email": "...", "groups": ["..."], "amr": ["..."] } },
//     "id_token_ttl": 3600, "host": "127.0.0.1", "port": 0, "issuer": "..." }
// (`host`, `port` and `issuer` are optional: by default it listens on
// 127.0.0.1 on a port of its own choosing, and its issuer is that address;
// docker-compose.yml's `oidc` service sets all three.)
// Users named `tamper-sig`, `tamper-aud` and `tamper-exp` get an ID token
// that the relay must refuse, made here the way an attacker between the
// relay and the provider (or a rogue provider) would: the token endpoint's
// answer is changed after the provider made it, with a corrupted signature,
// or re-signed with the provider's own key (so the signature is good) for
// another audience or with an expiry an hour ago. The user `rotate-keys`
// gets a good token signed with a new key, which the provider's key set
// lists from then on: a key rotation the relay has not seen yet. A user
// with `amr` gets those authentication methods (RFC 8176) in the ID token,
// as a provider that asked them for a second factor says: the development
// login pages ask for one password only, so the claim is added here and the
// token signed again with the provider's key.
//
// It listens on 127.0.0.1 on a port of its own choosing and prints one JSON
// line with its issuer URL ({"issuer": "http://127.0.0.1:PORT"}) once it
// serves; the harness then waits for its discovery document.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import * as jose from "jose";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const users = config.users ?? {};

const server = createServer();
await new Promise((resolve) => server.listen(config.port ?? 0, config.host ?? "127.0.0.1", resolve));
const issuer = config.issuer ?? `http://127.0.0.1:${server.address().port}`;

// The signing key, made here so that tampered tokens can be re-signed with it.
const { privateKey } = await jose.generateKeyPair("RS256", { extractable: true });
const signingKey = { ...(await jose.exportJWK(privateKey)), kid: "test-key", alg: "RS256", use: "sig" };
// The key it rotates to, published once `rotate-keys` has signed in.
const next = await jose.generateKeyPair("RS256", { extractable: true });
const nextPublic = { ...(await jose.exportJWK(next.publicKey)), kid: "next-key", alg: "RS256", use: "sig" };
let rotated = false;

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  clients: [
    {
      client_id: config.client_id,
      client_secret: config.client_secret,
      redirect_uris: config.redirect_uris,
      response_types: ["code"],
      grant_types: ["authorization_code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  // Claims in the ID token itself, as an identity provider configured for
  // a relay that reads only the ID token does.
  conformIdTokenClaims: false,
  claims: {
    openid: ["sub"],
    profile: ["preferred_username", "name"],
    email: ["email", "email_verified"],
    groups: ["groups"],
  },
  scopes: ["openid", "profile", "email", "groups"],
  ttl: { IdToken: config.id_token_ttl ?? 3600 },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, sub) {
    const user = users[sub];
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          preferred_username: sub,
          name: sub,
          email: user.email ?? `${sub}@example.test`,
          email_verified: true,
          groups: user.groups ?? [],
        };
      },
    };
  },
});
// The relay talks to it over plain HTTP on loopback (tests only).
provider.proxy = false;

/** The ID token `token` changed as the user `tamper-MODE` asks. */
async function tamper(token) {
  const [header, payload, signature] = token.split(".");
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
  if (claims.sub === "rotate-keys") {
    rotated = true;
    return new jose.SignJWT(claims)
      .setProtectedHeader({ alg: "RS256", typ: "JWT", kid: "next-key" })
      .sign(next.privateKey);
  }
  const amr = users[claims.sub]?.amr;
  if (amr) {
    return new jose.SignJWT({ ...claims, amr })
      .setProtectedHeader(JSON.parse(Buffer.from(header, "base64url").toString()))
      .sign(privateKey);
  }
  const mode = /^tamper-(sig|aud|exp)$/.exec(claims.sub)?.[1];
  if (!mode) return token;
  if (mode === "sig") {
    // One character of the signature changed.
    const i = Math.floor(signature.length / 2);
    const c = signature[i] === "A" ? "B" : "A";
    return `${header}.${payload}.${signature.slice(0, i)}${c}${signature.slice(i + 1)}`;
  }
  const now = Math.floor(Date.now() / 1000);
  if (mode === "aud") claims.aud = "another-client";
  if (mode === "exp") {
    claims.iat = now - 7200;
    claims.exp = now - 3600;
  }
  return new jose.SignJWT(claims)
    .setProtectedHeader(JSON.parse(Buffer.from(header, "base64url").toString()))
    .sign(privateKey);
}

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === "/token" && ctx.body && typeof ctx.body.id_token === "string") {
    ctx.body = { ...ctx.body, id_token: await tamper(ctx.body.id_token) };
  }
  if (ctx.path === "/jwks" && rotated && ctx.body && Array.isArray(ctx.body.keys)) {
    ctx.body = { keys: [...ctx.body.keys, nextPublic] };
  }
});
server.on("request", provider.callback());
process.stdout.write(JSON.stringify({ issuer }) + "\n");
