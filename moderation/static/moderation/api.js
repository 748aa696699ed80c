// Requests to the moderation API as the logged-in moderator: the session
// cookie says who, every write carries Django's CSRF token, JSON both ways.
// An answer is {ok, status, data}; a network failure rejects (a TypeError).

const API = "/api/v1/moderation";

export class Api {
  // csrf: the token of the page's {% csrf_token %} (the API checks it on writes).
  constructor(csrf) {
    this.csrf = csrf;
  }

  get(path) { return this.call("GET", path); }

  post(path, body) { return this.call("POST", path, body); }

  async call(method, path, body) {
    const init = {method, credentials: "same-origin", headers: {Accept: "application/json"}};
    // Every write, with a body or not (a DELETE), carries the CSRF token.
    if (method !== "GET") init.headers["X-CSRFToken"] = this.csrf;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    const data = await response.json().catch(() => null);
    return {ok: response.ok, status: response.status, data};
  }
}

// The API's own words for a failure (every error body has "detail").
export function problem(answer) {
  const detail = answer.data && answer.data.detail;
  return detail ? `${detail} (${answer.status})` : `request failed (${answer.status})`;
}
