/**
 * The server's KubeStudio handlers (kubestudio/extensions/bridge.py), through JupyterLab's
 * ServerConnection: the XSRF token and the server's base URL come with it, and the hub token
 * never reaches the browser.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A refusal of the server or of a hub service: its status and its own words. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: { [key: string]: unknown } = {}
  ) {
    super(message);
  }
}

const settings = (): ServerConnection.ISettings => ServerConnection.makeSettings();

export function apiUrl(path: string): string {
  return URLExt.join(settings().baseUrl, 'api/kubestudio', path);
}

/** A JSON request; a 4xx/5xx becomes an ApiError with the service's message. */
export async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(apiUrl(path), init, settings());
  } catch (error) {
    throw new ApiError(0, `the server is not reachable: ${error}`);
  }
  const text = await response.text();
  let data: any = {};
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text };
    }
  }
  if (!response.ok) {
    throw new ApiError(response.status, data.message || `HTTP ${response.status} ${response.statusText}`, data);
  }
  return data as T;
}

export function post<T>(path: string, body: unknown = {}): Promise<T> {
  return requestAPI<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

/**
 * Follow a Server-Sent Events answer: each event's JSON to `onEvent`, until the stream ends or
 * `signal` aborts it.
 */
export async function followEvents(
  path: string,
  onEvent: (event: any) => void,
  signal: AbortSignal
): Promise<void> {
  const response = await ServerConnection.makeRequest(
    apiUrl(path),
    { headers: { Accept: 'text/event-stream' }, signal },
    settings()
  );
  if (!response.ok || !response.body) {
    let message = `HTTP ${response.status}`;
    try {
      message = (await response.json()).message || message;
    } catch {
      // not JSON: the status says it
    }
    throw new ApiError(response.status, message);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      return;
    }
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split('\n')
        .filter(line => line.startsWith('data:'))
        .map(line => line.slice(5).trimStart())
        .join('\n');
      if (data) {
        onEvent(JSON.parse(data));
      }
    }
  }
}
