// Where clients reach this server: the one base URL written into capabilities, TMS, OGC API links, the
// viewer and the management API's offering `urls`, so that they agree behind a reverse proxy.

/** A path prefix a proxy may announce: segments of URL path characters, no quote or angle bracket. */
const PREFIX = /^(\/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+\/?$/;

function first(value: string | null): string | undefined {
  return value?.split(',')[0].trim() || undefined;
}

/**
 * The configured public URL (TUILE_PUBLIC_URL) when there is one; else the request's scheme, host and path
 * prefix as the proxy in front saw them (X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Prefix, the first
 * value of each when proxies chain), falling back to the request's own. No trailing slash.
 */
export function publicBaseUrl(req: Request, publicUrl?: string): string {
  if (publicUrl) return publicUrl;
  const u = new URL(req.url);
  const h = req.headers;
  const proto = first(h.get('X-Forwarded-Proto')) ?? u.protocol.slice(0, -1);
  const host = first(h.get('X-Forwarded-Host')) ?? h.get('Host') ?? u.host;
  const prefix = first(h.get('X-Forwarded-Prefix'));
  return `${proto}://${host}${prefix && PREFIX.test(prefix) ? prefix.replace(/\/$/, '') : ''}`;
}
