// A real OpenID Connect provider (the certified `oidc-provider` package) on loopback, for
// evplug's "Sign in with Google / any OIDC issuer" tests. Its own development login form
// (devInteractions) signs in whatever login is typed; the account's email is that login, and it
// is verified unless the login starts with "unverified".
//
//   PORT=0 CLIENT_ID=evplug CLIENT_SECRET=s REDIRECT_URI=http://127.0.0.1/cb node provider.mjs
//
// prints "ready http://127.0.0.1:<port>" once it listens.
import http from "node:http";
import Provider from "oidc-provider";

const { CLIENT_ID, CLIENT_SECRET, REDIRECT_URI } = process.env;
if (!CLIENT_ID || !CLIENT_SECRET || !REDIRECT_URI) {
  console.error("set CLIENT_ID, CLIENT_SECRET and REDIRECT_URI");
  process.exit(2);
}

const server = http.createServer();
server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [REDIRECT_URI],
        grant_types: ["authorization_code"],
        response_types: ["code"],
      },
    ],
    claims: { openid: ["sub"], email: ["email", "email_verified"] },
    features: { devInteractions: { enabled: true } },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: id, email_verified: !id.startsWith("unverified") };
        },
      };
    },
  });
  server.on("request", provider.callback());
  console.log(`ready ${issuer}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
