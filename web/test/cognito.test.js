import assert from "node:assert/strict";
import { test } from "node:test";

import { AuthError, CognitoClient, cognitoEndpoint, decodeJwt, normalizeEmail, passwordRules } from "../src/cognito.js";

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
const jwt = (claims) => `${b64url({ alg: "RS256" })}.${b64url(claims)}.sig`;

function fakeFetch(answer) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init, body: JSON.parse(init.body) });
    const { status = 200, body = {} } = typeof answer === "function" ? answer(calls.at(-1)) : answer;
    return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/x-amz-json-1.1" } });
  };
  return { fn, calls };
}

test("the endpoint comes from config.json locally and from the region on AWS", () => {
  assert.equal(cognitoEndpoint({ region: "eu-west-1" }), "https://cognito-idp.eu-west-1.amazonaws.com/");
  assert.equal(cognitoEndpoint({ region: "us-east-1", cognitoEndpoint: "http://127.0.0.1:9" }), "http://127.0.0.1:9/");
});

test("sign-in posts USER_PASSWORD_AUTH with Cognito's JSON protocol headers", async () => {
  const id = jwt({ sub: "abc", email: "a@example.com", exp: 2000000000 });
  const { fn, calls } = fakeFetch({ body: { AuthenticationResult: { IdToken: id, AccessToken: "acc", RefreshToken: "ref", ExpiresIn: 3600 } } });
  const client = new CognitoClient({ endpoint: "http://cognito/", clientId: "client1", fetch: fn });
  const tokens = await client.signIn("a@example.com", "pw");
  assert.equal(calls[0].init.method, "POST");
  assert.equal(calls[0].init.headers["Content-Type"], "application/x-amz-json-1.1");
  assert.equal(calls[0].init.headers["X-Amz-Target"], "AWSCognitoIdentityProviderService.InitiateAuth");
  assert.deepEqual(calls[0].body, { AuthFlow: "USER_PASSWORD_AUTH", ClientId: "client1", AuthParameters: { USERNAME: "a@example.com", PASSWORD: "pw" } });
  assert.deepEqual(tokens, { idToken: id, accessToken: "acc", refreshToken: "ref", expiresAt: 2000000000 * 1000 });
});

test("a wrong password becomes a sentence, not a stack trace", async () => {
  const { fn } = fakeFetch({ status: 400, body: { __type: "NotAuthorizedException", message: "Incorrect username or password." } });
  const client = new CognitoClient({ endpoint: "http://cognito/", clientId: "c", fetch: fn });
  await assert.rejects(client.signIn("a@example.com", "bad"), (err) => err instanceof AuthError && err.code === "NotAuthorizedException" && err.message === "Wrong e-mail or password.");
});

test("an unknown user reads the same as a wrong password", async () => {
  const { fn } = fakeFetch({ status: 400, body: { __type: "com.amazonaws#UserNotFoundException", message: "User does not exist." } });
  const client = new CognitoClient({ endpoint: "http://cognito/", clientId: "c", fetch: fn });
  await assert.rejects(client.signIn("x@example.com", "pw"), { message: "Wrong e-mail or password." });
});

test("refresh keeps the refresh token Cognito does not send back", async () => {
  const id = jwt({ sub: "abc", exp: 2000000100 });
  const { fn, calls } = fakeFetch({ body: { AuthenticationResult: { IdToken: id, AccessToken: "acc2" } } });
  const client = new CognitoClient({ endpoint: "http://cognito/", clientId: "c", fetch: fn });
  const tokens = await client.refresh("ref");
  assert.equal(calls[0].body.AuthFlow, "REFRESH_TOKEN_AUTH");
  assert.equal(tokens.refreshToken, "ref");
});

test("sign-up names the e-mail as user name and attribute", async () => {
  const { fn, calls } = fakeFetch({ body: { UserConfirmed: false, UserSub: "s" } });
  const client = new CognitoClient({ endpoint: "http://cognito/", clientId: "c", fetch: fn });
  assert.deepEqual(await client.signUp("n@example.com", "Pw-123456"), { confirmed: false });
  assert.equal(calls[0].init.headers["X-Amz-Target"], "AWSCognitoIdentityProviderService.SignUp");
  assert.deepEqual(calls[0].body.UserAttributes, [{ Name: "email", Value: "n@example.com" }]);
});

test("no network is an error a person can act on", async () => {
  const client = new CognitoClient({ endpoint: "http://cognito/", clientId: "c", fetch: async () => { throw new TypeError("Failed to fetch"); } });
  await assert.rejects(client.signIn("a@example.com", "pw"), (err) => err.code === "NetworkError" && /Cannot reach/.test(err.message));
});

test("decodeJwt reads base64url claims, and garbage gives {}", () => {
  assert.deepEqual(decodeJwt(jwt({ sub: "ü-1" })), { sub: "ü-1" });
  assert.deepEqual(decodeJwt("nope"), {});
});

test("the e-mail is the user name in lower case, whatever was typed", async () => {
  const id = jwt({ sub: "abc", email: "alice@example.com", exp: 2000000000 });
  const { fn, calls } = fakeFetch({ body: { AuthenticationResult: { IdToken: id, AccessToken: "a", RefreshToken: "r" }, UserConfirmed: false } });
  const client = new CognitoClient({ endpoint: "http://cognito/", clientId: "c", fetch: fn });
  await client.signIn("  ALICE@Example.COM ", "pw");
  await client.signUp("Carol@Example.com", "Pw-123456789!");
  await client.confirmSignUp("CAROL@example.com", "123456");
  assert.equal(calls[0].body.AuthParameters.USERNAME, "alice@example.com");
  assert.equal(calls[1].body.Username, "carol@example.com");
  assert.deepEqual(calls[1].body.UserAttributes, [{ Name: "email", Value: "carol@example.com" }]);
  assert.equal(calls[2].body.Username, "carol@example.com");
  assert.equal(normalizeEmail(" Bob@X.org"), "bob@x.org");
});

test("a refused password shows the pool's rules, not Cognito's raw text", async () => {
  const raw = "Password did not conform with policy: Password not long enough";
  const { fn } = fakeFetch({ status: 400, body: { __type: "InvalidPasswordException", message: raw } });
  const client = new CognitoClient({ endpoint: "http://cognito/", clientId: "c", fetch: fn });
  await assert.rejects(client.signUp("a@example.com", "short"), (err) => {
    assert.equal(err.code, "InvalidPasswordException");
    assert.ok(!err.message.includes("did not conform"), err.message);
    assert.equal(
      err.message,
      "Choose another password. Use at least 10 characters, with a lower-case letter, an upper-case letter, a digit and a symbol such as ! or #.",
    );
    return true;
  });
  assert.equal(
    passwordRules({ minLength: 8, requireLowercase: false, requireUppercase: false, requireDigits: true, requireSymbols: false }),
    "Use at least 8 characters, with a digit.",
  );
});
