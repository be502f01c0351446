// what every service page's script shares: API and XSRF are set by the page before this
function el(id) { return document.getElementById(id); }

async function api(path, options = {}) {
  const response = await fetch(API + path, {credentials: "same-origin", ...options,
    headers: {"Content-Type": "application/json", "X-XSRFToken": XSRF, ...(options.headers || {})}});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || response.statusText);
  return body;
}
