// Messages for the user in one aria-live region: errors stay until dismissed or replaced by the
// same message again; information fades after a few seconds.

const region = () => document.getElementById('toasts');
const MAX_TOASTS = 4;

/**
 * Show a message. kind: 'error' | 'info' | 'success'. Repeats of a visible message are merged
 * so that a server that keeps failing does not bury the page in identical toasts.
 */
export function notify(message, { kind = 'info', title = null, timeout = null } = {}) {
  const container = region();
  if (!container || !message) return;
  const text = String(message);
  for (const existing of container.children) {
    if (existing.dataset.message === text) {
      existing.remove(); // re-add below so it moves to the newest position and restarts its timer
    }
  }
  const toast = document.createElement('div');
  toast.className = 'toast';
  toast.dataset.kind = kind;
  toast.dataset.message = text;
  if (kind === 'error') toast.setAttribute('role', 'alert'); // the others: the polite region
  const body = document.createElement('div');
  const heading = title ?? (kind === 'error' ? 'Something went wrong' : null);
  if (heading) {
    const strong = document.createElement('p');
    strong.className = 'toast-title';
    strong.textContent = heading;
    body.append(strong);
  }
  const paragraph = document.createElement('p');
  paragraph.textContent = text;
  body.append(paragraph);
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'btn btn-icon';
  close.setAttribute('aria-label', 'Dismiss message');
  close.textContent = '×';
  close.addEventListener('click', () => toast.remove());
  toast.append(body, close);
  container.append(toast);
  while (container.children.length > MAX_TOASTS) container.firstElementChild.remove();
  const lifetime = timeout ?? (kind === 'error' ? 12000 : 4000);
  if (lifetime > 0) setTimeout(() => toast.remove(), lifetime);
  return toast;
}

export const notifyError = (error, title = null) =>
  notify(error?.message ?? String(error), { kind: 'error', title });
