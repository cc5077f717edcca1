// The server's token, for servers that ask for one (GET /api/options says `auth_required`):
// starting, steering and deleting runs then need `Authorization: Bearer <token>`. The header
// button shows whether this browser has it; the dialog asks for it when the server refuses.

import { hasToken, setToken, whenAuthNeeded } from './api.js';
import { on, state } from './state.js';
import { notify } from './toast.js';

const $ = (id) => document.getElementById(id);

function render() {
  const required = Boolean(state.options?.auth_required);
  const button = $('token-button');
  button.hidden = !required;
  $('token-button-text').textContent = hasToken() ? 'Token set' : 'Enter token';
  button.dataset.state = hasToken() ? 'ready' : 'missing';
}

function ask(message) {
  const dialog = $('token-dialog');
  if (dialog.open) {
    $('token-message').textContent = message;
    return;
  }
  $('token-message').textContent = message
    ?? 'This server asks for its token before runs are started, steered or deleted.';
  $('token-input').value = '';
  dialog.returnValue = '';
  dialog.showModal();
  $('token-input').focus();
}

export function initAuth() {
  const dialog = $('token-dialog');
  $('token-button').addEventListener('click', () => ask(null));
  dialog.addEventListener('close', () => {
    if (dialog.returnValue === 'save' && $('token-input').value.trim()) {
      setToken($('token-input').value.trim());
      notify('Token saved in this browser. Try again.', { kind: 'success' });
    } else if (dialog.returnValue === 'forget') {
      setToken(null);
      notify('Token forgotten.', { kind: 'info' });
    }
    render();
  });
  whenAuthNeeded((message) => {
    if (!state.options) state.options = { auth_required: true };
    state.options.auth_required = true;
    render();
    ask(message);
  });
  on('options', render);
  render();
}
