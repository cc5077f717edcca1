// Messages for the user in one aria-live region: errors stay until dismissed or replaced; the
// others fade after a few seconds. A message about a run replaces the last one about the same
// run (`key`), so "started" never stays next to "failed". The region sits in whichever corner of
// the window covers no button, link, field or chart at the moment (checked again after a scroll).

const region = () => document.getElementById('toasts');
const MAX_TOASTS = 3;
const CORNERS = ['bottom-right', 'bottom-left', 'top-right', 'top-left'];
const MARGIN = 16;
const ACTIONS = 'button, a[href], input, select, textarea, summary, canvas, [tabindex]:not([tabindex="-1"])';

/** The rectangle the region would take in `corner`, in viewport pixels. */
function cornerRect(corner, width, height) {
  const header = document.querySelector('.topbar')?.getBoundingClientRect();
  const top = Math.max(MARGIN, (header?.bottom ?? 0) + 8);
  const x = corner.endsWith('right') ? window.innerWidth - MARGIN - width : MARGIN;
  const y = corner.startsWith('bottom') ? window.innerHeight - MARGIN - height : top;
  return { left: x, top: y, right: x + width, bottom: y + height };
}

const overlaps = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;

/** Put the region in the first corner that covers the fewest controls (none, where possible). */
export function placeToasts() {
  const container = region();
  if (!container?.children.length) return;
  const { width, height } = container.getBoundingClientRect();
  const controls = [...document.querySelectorAll(ACTIONS)]
    .filter((node) => !container.contains(node) && !node.closest('[hidden], dialog:not([open]), .menu[hidden]'))
    .map((node) => node.getBoundingClientRect())
    .filter((rect) => rect.width > 0 && rect.height > 0 && rect.bottom > 0 && rect.top < window.innerHeight);
  let best = null;
  for (const corner of CORNERS) {
    const rect = cornerRect(corner, width, height);
    const covered = controls.filter((control) => overlaps(rect, control)).length;
    if (!best || covered < best.covered) best = { corner, covered };
    if (covered === 0) break;
  }
  const header = document.querySelector('.topbar')?.getBoundingClientRect();
  container.style.setProperty('--header-height', `${Math.max(0, header?.bottom ?? 0)}px`);
  if (container.dataset.corner !== best.corner) container.dataset.corner = best.corner;
}

let scrollTimer = 0;
function placeLater() {
  clearTimeout(scrollTimer);
  scrollTimer = setTimeout(placeToasts, 120);
}
window.addEventListener('scroll', placeLater, { passive: true });
window.addEventListener('resize', placeLater);

/**
 * Show a message. kind: 'error' | 'info' | 'success'; key: a toast with the same key (e.g.
 * "run-12") is replaced. Repeats of a visible message are merged so that a server that keeps
 * failing does not bury the page in identical toasts.
 */
export function notify(message, { kind = 'info', title = null, timeout = null, key = null } = {}) {
  const container = region();
  if (!container || !message) return null;
  const text = String(message);
  for (const existing of [...container.children]) {
    if (existing.dataset.message === text || (key && existing.dataset.key === key)) {
      existing.remove(); // the new one takes its place, with a fresh timer
    }
  }
  const toast = document.createElement('div');
  toast.className = 'toast';
  toast.dataset.kind = kind;
  toast.dataset.message = text;
  if (key) toast.dataset.key = key;
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
  placeToasts();
  const lifetime = timeout ?? (kind === 'error' ? 12000 : 5000);
  if (lifetime > 0) setTimeout(() => toast.remove(), lifetime);
  return toast;
}

export const notifyError = (error, title = null, key = null) =>
  notify(error?.message ?? String(error), { kind: 'error', title, key });
