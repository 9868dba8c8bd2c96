// Calls to the admin API with the operator key the user signed in with.
// The key lives in this tab's sessionStorage only: no cookie, so no CSRF.

const KEY = "sluice.operator-key";

/** An RFC 9457 problem the API answered with. */
export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  request_id?: string;
  [extra: string]: unknown;
}

/** A refused call: the problem the API gave, or what went wrong on the way. */
export class ApiError extends Error {
  constructor(public problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`);
  }
}

export function key(): string | null {
  return sessionStorage.getItem(KEY);
}

export function signIn(value: string): void {
  sessionStorage.setItem(KEY, value.trim());
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
}

/** Called when the API refuses the key, so the page can ask for another. */
let onUnauthenticated: (problem: Problem) => void = () => {};
export function whenUnauthenticated(f: (problem: Problem) => void): void {
  onUnauthenticated = f;
}

/** `method path` with a JSON body (or form data); the answer's JSON. */
export async function call<T = any>(
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  const k = key();
  if (k) headers.authorization = `Bearer ${k}`;
  let payload: BodyInit | undefined;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError({
      status: 0,
      title: "Host unreachable",
      detail: `the admin API could not be reached: ${String(e)}`,
    });
  }
  const text = await response.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const problem: Problem =
      json && typeof json === "object"
        ? { status: response.status, ...json }
        : { status: response.status, title: response.statusText, detail: text };
    if (response.status === 401) onUnauthenticated(problem);
    throw new ApiError(problem);
  }
  return json as T;
}

/** A path with a query built from the non-empty entries of `params`. */
export function withQuery(path: string, params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export const enc = encodeURIComponent;
