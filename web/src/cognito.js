// Cognito user pools through their JSON API, with fetch: sign-up, sign-in
// (USER_PASSWORD_AUTH), refresh (REFRESH_TOKEN_AUTH). No SDK: four calls do
// not justify one, and the same code talks to moto locally.

const TARGET_PREFIX = "AWSCognitoIdentityProviderService.";

/** An error a person can read; `code` is Cognito's exception name. */
export class AuthError extends Error {
  /** @param {string} code  @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = "AuthError";
    this.code = code;
  }
}

/**
 * Cognito's endpoint: the one in config.json (moto, locally), else the region's.
 * @param {{region: string, cognitoEndpoint?: string}} config
 */
export function cognitoEndpoint(config) {
  if (config.cognitoEndpoint) return config.cognitoEndpoint.replace(/\/?$/, "/");
  return `https://cognito-idp.${config.region}.amazonaws.com/`;
}

/**
 * The user name for an e-mail address: trimmed and lower-cased, so that
 * `ALICE@example.com` signs in as `alice@example.com`. Every call that sends
 * a user name goes through this, sign-up included, so accounts made here are
 * always lower-case; the CDK pool is also case-insensitive
 * (`UsernameConfiguration.CaseSensitive: false`) for accounts made elsewhere.
 * @param {string} email
 */
export function normalizeEmail(email) {
  return email.trim().toLowerCase();
}

/**
 * @typedef {{minLength: number, requireLowercase: boolean, requireUppercase: boolean,
 *            requireDigits: boolean, requireSymbols: boolean}} PasswordPolicy
 */

/**
 * The CDK user pool's password policy (infra/iotnotify_infra/identity.py).
 * `iotnotify local`'s pool (moto's default) asks for less, so a password
 * that follows these rules is accepted by both.
 * @type {PasswordPolicy}
 */
export const PASSWORD_POLICY = Object.freeze({
  minLength: 10,
  requireLowercase: true,
  requireUppercase: true,
  requireDigits: true,
  requireSymbols: true,
});

/**
 * The policy as one sentence a person can follow, e.g. "Use at least 10
 * characters, with a lower-case letter, an upper-case letter, a digit and a symbol."
 * @param {PasswordPolicy} [policy]
 */
export function passwordRules(policy = PASSWORD_POLICY) {
  const needs = [];
  if (policy.requireLowercase) needs.push("a lower-case letter");
  if (policy.requireUppercase) needs.push("an upper-case letter");
  if (policy.requireDigits) needs.push("a digit");
  if (policy.requireSymbols) needs.push("a symbol such as ! or #");
  const list = needs.length > 1 ? `${needs.slice(0, -1).join(", ")} and ${needs.at(-1)}` : needs.join("");
  return `Use at least ${policy.minLength} characters${list ? `, with ${list}` : ""}.`;
}

/**
 * A sentence for the person at the keyboard, from Cognito's error.
 * @param {string} code  @param {string} message  @param {string} target
 */
export function friendlyMessage(code, message, target) {
  switch (code) {
    case "NotAuthorizedException":
      if (target === "InitiateAuth:refresh") return "Your session has expired. Sign in again.";
      if (/password attempts exceeded/i.test(message)) return "Too many failed attempts. Wait a few minutes and try again.";
      return "Wrong e-mail or password.";
    case "UserNotFoundException":
      // Same words as a wrong password: do not reveal which accounts exist.
      return "Wrong e-mail or password.";
    case "UserNotConfirmedException":
      return "This account is not confirmed yet. Enter the code we e-mailed you.";
    case "UsernameExistsException":
      return "An account with this e-mail already exists. Sign in instead.";
    case "InvalidPasswordException":
      // Cognito's (and moto's) text names one failed check in its own terms
      // ("Password did not conform with policy: ..."); the rules say what to do.
      return `Choose another password. ${passwordRules()}`;
    case "CodeMismatchException":
    case "ExpiredCodeException":
      return "That confirmation code is wrong or expired.";
    case "TooManyRequestsException":
    case "LimitExceededException":
      return "Too many attempts. Wait a minute and try again.";
    case "PasswordResetRequiredException":
      return "You need to reset your password before signing in.";
    case "InvalidParameterException":
      return message || "Check the e-mail address and password.";
    default:
      return message || `Sign-in failed (${code}).`;
  }
}

export class CognitoClient {
  /**
   * @param {{endpoint: string, clientId: string, fetch?: typeof fetch}} options
   */
  constructor({ endpoint, clientId, fetch: fetchImpl }) {
    this.endpoint = endpoint;
    this.clientId = clientId;
    this.fetch = fetchImpl ?? globalThis.fetch.bind(globalThis);
  }

  /**
   * @param {string} action  @param {object} body  @param {string} [label]
   * @returns {Promise<any>}
   */
  async call(action, body, label = action) {
    let response;
    try {
      response = await this.fetch(this.endpoint, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-amz-json-1.1",
          "X-Amz-Target": TARGET_PREFIX + action,
        },
        body: JSON.stringify(body),
      });
    } catch (err) {
      throw new AuthError("NetworkError", `Cannot reach the sign-in service (${errorText(err)}). Check your connection and try again.`);
    }
    const text = await response.text();
    /** @type {Record<string, any>} */
    let data = {};
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      data = {};
    }
    if (!response.ok) {
      const rawType = String(data.__type ?? data.code ?? response.headers.get("x-amzn-errortype") ?? "");
      const code = rawType.split("#").pop()?.split(":")[0] || `HTTP${response.status}`;
      const message = String(data.message ?? data.Message ?? "");
      throw new AuthError(code, friendlyMessage(code, message, label));
    }
    return data;
  }

  /**
   * @param {string} email  @param {string} password
   * @returns {Promise<Tokens>}
   */
  async signIn(email, password) {
    const data = await this.call("InitiateAuth", {
      AuthFlow: "USER_PASSWORD_AUTH",
      ClientId: this.clientId,
      AuthParameters: { USERNAME: normalizeEmail(email), PASSWORD: password },
    });
    if (data.ChallengeName) {
      throw new AuthError(data.ChallengeName, `This account needs a step this page does not support yet (${data.ChallengeName}).`);
    }
    return tokensFrom(data.AuthenticationResult, null);
  }

  /**
   * @param {string} refreshToken
   * @returns {Promise<Tokens>}
   */
  async refresh(refreshToken) {
    const data = await this.call(
      "InitiateAuth",
      { AuthFlow: "REFRESH_TOKEN_AUTH", ClientId: this.clientId, AuthParameters: { REFRESH_TOKEN: refreshToken } },
      "InitiateAuth:refresh",
    );
    return tokensFrom(data.AuthenticationResult, refreshToken);
  }

  /**
   * The user pool uses the e-mail address as the user name.
   * @param {string} email  @param {string} password
   * @returns {Promise<{confirmed: boolean}>}
   */
  async signUp(email, password) {
    const username = normalizeEmail(email);
    const data = await this.call("SignUp", {
      ClientId: this.clientId,
      Username: username,
      Password: password,
      UserAttributes: [{ Name: "email", Value: username }],
    });
    return { confirmed: Boolean(data.UserConfirmed) };
  }

  /** @param {string} email  @param {string} code */
  async confirmSignUp(email, code) {
    await this.call("ConfirmSignUp", { ClientId: this.clientId, Username: normalizeEmail(email), ConfirmationCode: code });
  }

  /**
   * Ends the session everywhere; the caller forgets the tokens whatever happens.
   * @param {string} accessToken
   */
  async signOut(accessToken) {
    await this.call("GlobalSignOut", { AccessToken: accessToken });
  }
}

/**
 * @typedef {{idToken: string, accessToken: string, refreshToken: string, expiresAt: number}} Tokens
 */

/**
 * @param {any} result  @param {string | null} previousRefresh
 * @returns {Tokens}
 */
function tokensFrom(result, previousRefresh) {
  if (!result || typeof result.IdToken !== "string") {
    throw new AuthError("InvalidResponse", "The sign-in service answered without tokens.");
  }
  const claims = decodeJwt(result.IdToken);
  const expiresAt =
    typeof claims.exp === "number" ? claims.exp * 1000 : Date.now() + Number(result.ExpiresIn ?? 3600) * 1000;
  return {
    idToken: result.IdToken,
    accessToken: String(result.AccessToken ?? ""),
    // REFRESH_TOKEN_AUTH does not return a new refresh token: keep the old one.
    refreshToken: String(result.RefreshToken ?? previousRefresh ?? ""),
    expiresAt,
  };
}

/**
 * The claims of a JWT, unverified: only for display and expiry (the API verifies).
 * @param {string} token
 * @returns {Record<string, any>}
 */
export function decodeJwt(token) {
  const part = token.split(".")[1];
  if (!part) return {};
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return {};
  }
}

/** @param {unknown} err */
function errorText(err) {
  return err instanceof Error ? err.message : String(err);
}
