// A real OpenID provider for the tests: oidc-provider (OpenID Certified), on
// loopback, with one confidential client and a few users with groups. Its
// login and consent pages are the library's own (devInteractions): any
// password is accepted for a known user, an unknown user is refused.
//
// Started by tests/src/oidc.rs as
//   node provider.mjs CONFIG.json
// where CONFIG.json is
//   { "client_id": "...", "client_secret": "...", "redirect_uris": ["..."],
//     "users": { "name": { "email": "...", "groups": ["..."] } },
//     "id_token_ttl": 3600 }
// It listens on 127.0.0.1 on a port of its own choosing and prints one JSON
// line with its issuer URL ({"issuer": "http://127.0.0.1:PORT"}) once it
// serves; the harness then waits for its discovery document.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const users = config.users ?? {};

const server = createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
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
server.on("request", provider.callback());
process.stdout.write(JSON.stringify({ issuer }) + "\n");
