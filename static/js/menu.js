// One popup menu for the run table's row actions (WAI-ARIA menu button pattern): a row has one
// "Actions" button instead of six; the menu opens under it, arrow keys move, Escape closes and
// returns focus to the button, and a click anywhere else closes it.

const $ = (id) => document.getElementById(id);
let anchor = null;
let onPick = null;

function items() {
  return [...$('row-menu').querySelectorAll('[role="menuitem"]:not([aria-disabled="true"])')];
}

export function closeMenu({ focus = false } = {}) {
  const menu = $('row-menu');
  if (menu.hidden) return;
  menu.hidden = true;
  anchor?.setAttribute('aria-expanded', 'false');
  if (focus) anchor?.focus();
  anchor = null;
}

/**
 * Open the menu under `button` with `entries` ({label, action, href, download, disabled,
 * danger}); `pick(action)` is called for a chosen entry without `href`.
 */
export function openMenu(button, entries, pick) {
  const menu = $('row-menu');
  if (anchor === button && !menu.hidden) {
    closeMenu({ focus: true });
    return;
  }
  closeMenu();
  anchor = button;
  onPick = pick;
  menu.setAttribute('aria-label', button.getAttribute('aria-label') ?? 'Actions');
  menu.replaceChildren(...entries.map((entry) => {
    const item = document.createElement(entry.href ? 'a' : 'button');
    item.setAttribute('role', 'menuitem');
    item.className = `menu-item${entry.danger ? ' danger' : ''}`;
    item.textContent = entry.label;
    item.tabIndex = -1;
    item.dataset.action = entry.action;
    if (entry.href) {
      item.href = entry.href;
      if (entry.download) item.download = entry.download;
    } else item.type = 'button';
    if (entry.disabled) item.setAttribute('aria-disabled', 'true');
    if (entry.title) item.title = entry.title;
    return item;
  }));
  menu.hidden = false;
  button.setAttribute('aria-expanded', 'true');
  place();
  items()[0]?.focus({ preventScroll: true });
}

/** Under its button (above it when there is no room below); closed once the button is gone. */
function place() {
  const menu = $('row-menu');
  if (menu.hidden || !anchor) return;
  const rect = anchor.getBoundingClientRect();
  if (!anchor.isConnected || rect.bottom < 0 || rect.top > window.innerHeight) {
    closeMenu();
    return;
  }
  const { width, height } = menu.getBoundingClientRect();
  const below = rect.bottom + 4 + height <= window.innerHeight;
  menu.style.top = `${Math.max(4, below ? rect.bottom + 4 : rect.top - 4 - height)}px`;
  menu.style.left = `${Math.max(4, Math.min(window.innerWidth - width - 4, rect.right - width))}px`;
}

export function initMenu() {
  const menu = $('row-menu');
  menu.addEventListener('click', (event) => {
    const item = event.target.closest('[role="menuitem"]');
    if (!item || item.getAttribute('aria-disabled') === 'true') {
      event.preventDefault();
      return;
    }
    const pick = onPick;
    closeMenu({ focus: !item.href });
    if (!item.href) pick?.(item.dataset.action);
  });
  menu.addEventListener('keydown', (event) => {
    const list = items();
    const index = list.indexOf(document.activeElement);
    const move = { ArrowDown: index + 1, ArrowUp: index - 1, Home: 0, End: list.length - 1 }[event.key];
    if (move !== undefined) {
      event.preventDefault();
      list[(move + list.length) % list.length]?.focus();
    } else if (event.key === 'Escape') {
      event.preventDefault();
      closeMenu({ focus: true });
    } else if (event.key === 'Tab') {
      closeMenu({ focus: true });
    }
  });
  document.addEventListener('pointerdown', (event) => {
    if (!menu.hidden && !menu.contains(event.target) && event.target !== anchor && !anchor?.contains(event.target)) closeMenu();
  });
  window.addEventListener('resize', place);
  document.addEventListener('scroll', place, { passive: true, capture: true });
}
